import BusCore
import HTTPService
import NodeProtocol
import Testing

@Suite("What a node boots (pure)")
struct BootDecisionTests {
    let node = Node(id: "525400000001", identifiers: ["52:54:00:00:00:01"], name: "n1", createdAt: 0, updatedAt: 0)

    @Test("An unknown machine is discovered, ignored or booted locally, by the policy")
    func unknownMachines() {
        #expect(bootDecision(node: nil, unknownNodes: .discover, activeTask: .noGraph) == .discover)
        #expect(bootDecision(node: nil, unknownNodes: .ignore, activeTask: .noGraph) == .serve(BootScript(template: "ignore.ipxe")))
        #expect(bootDecision(node: nil, unknownNodes: .bootLocal, activeTask: .noGraph) == .serve(BootScript(template: "boot-local.ipxe")))
    }

    @Test("A running task's profile wins, rendered with the task's properties")
    func activeTaskProfile() {
        var withSettings = node
        withSettings.bootSettings = BootSettings(profile: "install-debian.ipxe", options: ["hostname": "a"])
        let answer = ActiveTaskAnswer.profile("discovery.ipxe", properties: ["duration": 10000])
        #expect(
            bootDecision(node: withSettings, unknownNodes: .ignore, activeTask: answer)
                == .serve(BootScript(template: "discovery.ipxe", options: ["duration": 10000])))
    }

    @Test("An active graph without a profile makes the node wait")
    func activeGraphWithoutProfile() {
        #expect(bootDecision(node: node, unknownNodes: .discover, activeTask: .noProfile) == .serve(BootScript(template: "wait.ipxe")))
    }

    @Test("Without a graph the node boots its boot settings' profile with their options")
    func bootSettingsProfile() {
        var withSettings = node
        withSettings.bootSettings = BootSettings(profile: "install-debian.ipxe", options: ["hostname": "web1"])
        #expect(
            bootDecision(node: withSettings, unknownNodes: .discover, activeTask: .noGraph)
                == .serve(BootScript(template: "install-debian.ipxe", options: ["hostname": "web1"])))
    }

    @Test("Without a graph or a profile the node boots from its local disk", arguments: [nil, BootSettings(), BootSettings(profile: "")])
    func bootLocal(settings: BootSettings?) {
        var known = node
        known.bootSettings = settings
        #expect(bootDecision(node: known, unknownNodes: .discover, activeTask: .noGraph) == .serve(BootScript(template: "boot-local.ipxe")))
    }
}
