// swift-tools-version:6.0
import PackageDescription

/// What a bus service that keeps its state in SQLite builds on (DHCPService, TaskGraphRunner, EventsLogger).
let serviceWithStoreDependencies: [Target.Dependency] = [
    "BusCore",
    "StoreSupport",
    .product(name: "GRDB", package: "GRDB.swift"),
    .product(name: "Logging", package: "swift-log"),
    .product(name: "Metrics", package: "swift-metrics"),
    .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
]

let package = Package(
    name: "RackBus",
    platforms: [.macOS(.v15)],
    products: [
        .library(name: "BusCore", targets: ["BusCore"]),
        .library(name: "DHCPService", targets: ["DHCPService"]),
        .library(name: "TaskGraphRunner", targets: ["TaskGraphRunner"]),
        .library(name: "WorkflowProtocol", targets: ["WorkflowProtocol"]),
        .library(name: "Scheduler", targets: ["Scheduler"]),
        .library(name: "EventsLogger", targets: ["EventsLogger"]),
        .library(name: "ConfigurationService", targets: ["ConfigurationService"]),
        .library(name: "NodeProtocol", targets: ["NodeProtocol"]),
        .library(name: "NodeRegistry", targets: ["NodeRegistry"]),
        .library(name: "TFTPService", targets: ["TFTPService"]),
        .library(name: "HTTPService", targets: ["HTTPService"]),
        .executable(name: "rackbus", targets: ["rackbus"]),
        .executable(name: "rackbus-bench", targets: ["rackbus-bench"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/groue/GRDB.swift", from: "7.10.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/apple/swift-collections", from: "1.6.0"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
        .package(url: "https://github.com/hummingbird-project/swift-mustache", from: "2.1.1"),
        .package(url: "https://github.com/vapor/postgres-nio", from: "1.33.2"),
        .package(url: "https://github.com/apple/swift-nio-ssl", from: "2.37.6"),
    ],
    targets: [
        .systemLibrary(
            name: "CRabbitMQ",
            pkgConfig: "librabbitmq",
            providers: [.apt(["librabbitmq-dev"])]
        ),
        .target(
            name: "BusCore",
            dependencies: [
                "CRabbitMQ",
                .product(name: "DequeModule", package: "swift-collections"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        .target(
            name: "Observability",
            dependencies: [
                "BusCore",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        .target(
            name: "StoreSupport",
            dependencies: [.product(name: "GRDB", package: "GRDB.swift")]
        ),
        .target(
            name: "DHCPService",
            dependencies: serviceWithStoreDependencies + ["NodeProtocol"]
        ),
        .target(
            name: "WorkflowProtocol",
            dependencies: ["BusCore"]
        ),
        .target(
            name: "TaskGraphRunner",
            dependencies: serviceWithStoreDependencies + [
                "NodeProtocol", "WorkflowProtocol", .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
            ]
        ),
        .target(
            name: "Scheduler",
            dependencies: [
                "BusCore",
                "WorkflowProtocol",
                .product(name: "DequeModule", package: "swift-collections"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        .target(
            name: "EventsLogger",
            dependencies: serviceWithStoreDependencies
        ),
        .target(
            name: "ConfigurationService",
            dependencies: [
                "BusCore",
                "StoreSupport",
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        .target(
            name: "NodeProtocol",
            dependencies: ["BusCore"]
        ),
        .target(
            name: "NodeRegistry",
            dependencies: serviceWithStoreDependencies + ["NodeProtocol"]
        ),
        .target(
            name: "TFTPService",
            dependencies: [
                "BusCore",
                "NodeProtocol",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Mustache", package: "swift-mustache"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        .target(
            name: "HTTPService",
            dependencies: [
                "BusCore",
                "NodeProtocol",
                "WorkflowProtocol",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Mustache", package: "swift-mustache"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        .executableTarget(
            name: "rackbus",
            dependencies: [
                "BusCore",
                "DHCPService",
                "TaskGraphRunner",
                "Scheduler",
                "ConfigurationService",
                "EventsLogger",
                "Observability",
                "NodeProtocol",
                "NodeRegistry",
                "TFTPService",
                "HTTPService",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        .executableTarget(
            name: "rackbus-bench",
            dependencies: [
                "BusCore",
                "DHCPService",
                "TaskGraphRunner",
                "Scheduler",
                "NodeProtocol",
                "NodeRegistry",
                "TFTPService",
                "HTTPService",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ]
        ),
        .target(
            name: "BusTestSupport",
            dependencies: ["BusCore", "WorkflowProtocol", .product(name: "Logging", package: "swift-log")],
            path: "Tests/BusTestSupport"
        ),
        .testTarget(
            name: "BusCoreTests",
            dependencies: [
                "BusCore",
                "BusTestSupport",
                .product(name: "MetricsTestKit", package: "swift-metrics"),
            ]
        ),
        .testTarget(
            name: "DHCPServiceTests",
            dependencies: [
                .product(name: "GRDB", package: "GRDB.swift"),
                "DHCPService",
                "BusCore",
                "BusTestSupport",
            ]
        ),
        .testTarget(
            name: "TaskGraphRunnerTests",
            dependencies: [
                .product(name: "GRDB", package: "GRDB.swift"),
                "TaskGraphRunner",
                "Scheduler",
                "StoreSupport",
                "BusCore",
                "BusTestSupport",
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "MetricsTestKit", package: "swift-metrics"),
            ]
        ),
        .testTarget(
            name: "EventsLoggerTests",
            dependencies: [
                .product(name: "GRDB", package: "GRDB.swift"),
                "EventsLogger",
                "BusCore",
                "BusTestSupport",
            ]
        ),
        .testTarget(
            name: "ConfigurationServiceTests",
            dependencies: [
                .product(name: "GRDB", package: "GRDB.swift"),
                "ConfigurationService",
                "BusCore",
                "BusTestSupport",
            ]
        ),
        .testTarget(
            name: "SystemTests",
            dependencies: [
                "BusCore",
                "DHCPService",
                "ConfigurationService",
                "TaskGraphRunner",
                "Scheduler",
                "Observability",
                "NodeProtocol",
                "NodeRegistry",
                "TFTPService",
                "HTTPService",
                "EventsLogger",
                "BusTestSupport",
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ]
        ),
        .testTarget(
            name: "NodeRegistryTests",
            dependencies: [
                .product(name: "GRDB", package: "GRDB.swift"),"NodeRegistry", "NodeProtocol", "BusCore", "BusTestSupport"]
        ),
        .testTarget(
            name: "TFTPServiceTests",
            dependencies: [
                "TFTPService",
                "NodeProtocol",
                "BusCore",
                "BusTestSupport",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ]
        ),
        .testTarget(
            name: "HTTPServiceTests",
            dependencies: [
                "HTTPService",
                "NodeRegistry",
                "NodeProtocol",
                "TaskGraphRunner",
                "Scheduler",
                "BusCore",
                "BusTestSupport",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdTesting", package: "hummingbird"),
            ]
        ),
        .testTarget(
            name: "BusIntegrationTests",
            dependencies: [
                "BusCore",
                "BusTestSupport",
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
    ],
    swiftLanguageModes: [.v6]
)
