import BusCore
import Testing

@testable import TaskGraphRunner

@Suite("Graph runs: readiness, branching and completion")
struct GraphRunTests {
    @Test func noopExampleRunsToSuccessStepByStep() throws {
        let example = try GraphFixtures.decode(GraphDefinition.self, GraphFixtures.noopExampleJSON)
        var run = try GraphFixtures.run(example)
        #expect(run.status == .pending)
        #expect(run.states == ["noop-1": .pending, "noop-2": .pending, "parallel-noop-1": .pending, "parallel-noop-2": .pending])

        #expect(run.begin() == [.start(label: "noop-1")])
        #expect(run.status == .running)
        #expect(run.states["noop-1"] == .running)
        #expect(run.taskFinished(label: "noop-1", state: .succeeded) == [.start(label: "noop-2")])
        // `finished` accepts a failure too, and noop-1 failing would not have failed the graph (terminalOnStates is []).
        #expect(
            run.taskFinished(label: "noop-2", state: .succeeded) == [.start(label: "parallel-noop-1"), .start(label: "parallel-noop-2")])
        #expect(run.taskFinished(label: "parallel-noop-2", state: .succeeded) == [])
        #expect(run.status == .running)
        #expect(run.taskFinished(label: "parallel-noop-1", state: .succeeded) == [.finished(.succeeded)])
        #expect(run.status == .succeeded)
        #expect(run.states.values.allSatisfy { $0 == .succeeded })
    }

    @Test func finishedWaitAcceptsAFailure() throws {
        var run = try GraphFixtures.run(GraphFixtures.noopGraph(["1", "2"], waits: ["2": WaitOn(all: ["1": [.finished]])]))
        _ = run.begin()
        #expect(run.taskFinished(label: "1", state: .failed) == [.start(label: "2")])
        #expect(run.taskFinished(label: "2", state: .succeeded) == [.finished(.succeeded)])
    }

    @Test func discoveryTakesTheFailedBranch() throws {
        let discovery = try GraphFixtures.decode(GraphDefinition.self, GraphFixtures.discoveryJSON)
        var run = GraphRun(plan: try GraphCompiler.compile(discovery, library: GraphFixtures.discoveryLibrary))

        #expect(run.begin() == [.start(label: "bootstrap-ubuntu"), .start(label: "catalog-dmi")])
        #expect(run.taskFinished(label: "catalog-dmi", state: .succeeded) == [.start(label: "catalog-ohai")])
        #expect(run.taskFinished(label: "catalog-ohai", state: .succeeded) == [.start(label: "catalog-bmc")])
        // The node has no BMC: catalog-bmc fails, but it ignores failure and its successor waits on `finished`.
        #expect(run.taskFinished(label: "catalog-bmc", state: .failed) == [.start(label: "set-interfaces")])
        let chain = GraphFixtures.catalogChain
        for (finished, next) in zip(chain.dropFirst(), chain.dropFirst(2)) {
            #expect(run.taskFinished(label: finished, state: .succeeded) == [.start(label: next)])
        }
        #expect(run.taskFinished(label: "catalog-lldp", state: .succeeded) == [.start(label: "set-boot-pxe")])
        #expect(
            run.taskFinished(label: "set-boot-pxe", state: .succeeded)
                == [.start(label: "skip-reboot-post-discovery"), .start(label: "finish-bootstrap-trigger")])
        #expect(run.taskFinished(label: "finish-bootstrap-trigger", state: .succeeded) == [.start(label: "node-discovered-alert")])
        // The trigger completes the bootstrap task.
        #expect(run.taskFinished(label: "bootstrap-ubuntu", state: .succeeded) == [])

        // skipReboot is "false", so the condition fails and the reboot branch runs; the `succeeded` branch is dead.
        #expect(run.taskFinished(label: "skip-reboot-post-discovery", state: .failed) == [.start(label: "shell-reboot")])
        #expect(run.unreachable == ["noop"])
        #expect(run.taskFinished(label: "node-discovered-alert", state: .succeeded) == [])
        #expect(run.status == .running)
        #expect(run.taskFinished(label: "shell-reboot", state: .succeeded) == [.finished(.succeeded)])
        #expect(run.states["noop"] == .pending)
        #expect(run.states["catalog-bmc"] == .failed)
    }

    @Test func discoveryTakesTheSucceededBranch() throws {
        let discovery = try GraphFixtures.decode(GraphDefinition.self, GraphFixtures.discoveryJSON)
        var run = GraphRun(plan: try GraphCompiler.compile(discovery, library: GraphFixtures.discoveryLibrary))
        _ = run.begin()
        let order = ["catalog-dmi", "catalog-ohai"] + GraphFixtures.catalogChain + ["set-boot-pxe"]
        for label in order { _ = run.taskFinished(label: label, state: .succeeded) }
        #expect(run.taskFinished(label: "skip-reboot-post-discovery", state: .succeeded) == [.start(label: "noop")])
        #expect(run.unreachable == ["shell-reboot"])
        #expect(run.taskFinished(label: "finish-bootstrap-trigger", state: .succeeded) == [.start(label: "node-discovered-alert")])
        #expect(run.taskFinished(label: "node-discovered-alert", state: .succeeded) == [])
        #expect(run.taskFinished(label: "bootstrap-ubuntu", state: .succeeded) == [])
        #expect(run.taskFinished(label: "noop", state: .succeeded) == [.finished(.succeeded)])
    }

    @Test func discoveryFailsWhenAnUnguardedTaskFails() throws {
        let discovery = try GraphFixtures.decode(GraphDefinition.self, GraphFixtures.discoveryJSON)
        var run = GraphRun(plan: try GraphCompiler.compile(discovery, library: GraphFixtures.discoveryLibrary))
        _ = run.begin()
        // bootstrap-ubuntu has no downstream task and does not ignore failure.
        #expect(run.taskFinished(label: "bootstrap-ubuntu", state: .timeout) == [.cancel(label: "catalog-dmi"), .finished(.failed)])
        #expect(run.states["catalog-ohai"] == .failed)
        #expect(run.states["catalog-dmi"] == .running)
    }

    @Test func orListStartsOnAnyListedState() throws {
        let definition = GraphFixtures.noopGraph(["probe", "recover"], waits: ["recover": WaitOn(all: ["probe": [.failed, .timeout]])])
        var timedOut = try GraphFixtures.run(definition)
        _ = timedOut.begin()
        #expect(timedOut.taskFinished(label: "probe", state: .timeout) == [.start(label: "recover")])
        #expect(timedOut.taskFinished(label: "recover", state: .succeeded) == [.finished(.succeeded)])

        var succeeded = try GraphFixtures.run(definition)
        _ = succeeded.begin()
        #expect(succeeded.taskFinished(label: "probe", state: .succeeded) == [.finished(.succeeded)])
        #expect(succeeded.states["recover"] == .pending)
        #expect(succeeded.unreachable == ["recover"])
    }

    @Test func anyOfStartsOnTheFirstSatisfiedEntry() throws {
        let definition = GraphFixtures.noopGraph(
            ["a", "b", "c"], waits: ["c": WaitOn(anyOf: ["a": [.succeeded], "b": [.succeeded]])], ignoringFailure: ["a", "b"])
        var run = try GraphFixtures.run(definition)
        #expect(run.begin() == [.start(label: "a"), .start(label: "b")])
        #expect(run.taskFinished(label: "b", state: .succeeded) == [.start(label: "c")])
        #expect(run.taskFinished(label: "c", state: .succeeded) == [])
        #expect(run.taskFinished(label: "a", state: .failed) == [.finished(.succeeded)])
    }

    @Test func anyOfWithEveryEntryImpossibleIsUnreachable() throws {
        let definition = GraphFixtures.noopGraph(
            ["a", "b", "c", "after-c"],
            waits: ["c": WaitOn(anyOf: ["a": [.succeeded], "b": [.succeeded]]), "after-c": WaitOn(all: ["c": [.finished]])],
            ignoringFailure: ["a", "b"])
        var run = try GraphFixtures.run(definition)
        _ = run.begin()
        #expect(run.taskFinished(label: "a", state: .failed) == [])
        #expect(run.unreachable.isEmpty)
        #expect(run.taskFinished(label: "b", state: .cancelled) == [.finished(.succeeded)])
        // Unreachable transitively, and both stay pending.
        #expect(run.unreachable == ["c", "after-c"])
        #expect(run.states["c"] == .pending && run.states["after-c"] == .pending)
    }

    @Test func allAndAnyOfTogether() throws {
        let definition = GraphFixtures.noopGraph(
            ["gate", "x", "y", "joined"],
            waits: ["joined": WaitOn(all: ["gate": [.finished]], anyOf: ["x": [.succeeded], "y": [.succeeded]])],
            ignoringFailure: ["x", "y"])
        var run = try GraphFixtures.run(definition)
        _ = run.begin()
        #expect(run.taskFinished(label: "x", state: .succeeded) == [])
        #expect(run.taskFinished(label: "gate", state: .succeeded) == [.start(label: "joined")])
        #expect(run.taskFinished(label: "joined", state: .succeeded) == [])
        #expect(run.taskFinished(label: "y", state: .succeeded) == [.finished(.succeeded)])

        var failedGate = try GraphFixtures.run(
            GraphFixtures.noopGraph(
                ["gate", "x", "joined"], waits: ["joined": WaitOn(all: ["gate": [.succeeded]], anyOf: ["x": [.finished]])],
                ignoringFailure: ["gate"]))
        _ = failedGate.begin()
        #expect(failedGate.taskFinished(label: "gate", state: .failed) == [])
        #expect(failedGate.unreachable == ["joined"])
        #expect(failedGate.taskFinished(label: "x", state: .succeeded) == [.finished(.succeeded)])
    }

    @Test func parallelTerminalBranchesWaitForEachOther() throws {
        // RackHD (since on-core ec6f008) marked this graph succeeded when `fast` finished.
        let definition = GraphFixtures.noopGraph(
            ["root", "fast", "slow", "after-slow"],
            waits: [
                "fast": WaitOn(all: ["root": [.finished]]), "slow": WaitOn(all: ["root": [.finished]]),
                "after-slow": WaitOn(all: ["slow": [.succeeded]]),
            ])
        var run = try GraphFixtures.run(definition)
        _ = run.begin()
        #expect(run.taskFinished(label: "root", state: .succeeded) == [.start(label: "fast"), .start(label: "slow")])
        #expect(run.taskFinished(label: "fast", state: .succeeded) == [])
        #expect(run.status == .running)
        #expect(run.taskFinished(label: "slow", state: .succeeded) == [.start(label: "after-slow")])
        #expect(run.status == .running)
        #expect(run.taskFinished(label: "after-slow", state: .succeeded) == [.finished(.succeeded)])
    }

    @Test func ignoreFailureKeepsTheGraphGoing() throws {
        var ignoring = try GraphFixtures.run(GraphFixtures.noopGraph(["flaky", "other"], ignoringFailure: ["flaky"]))
        _ = ignoring.begin()
        #expect(ignoring.taskFinished(label: "flaky", state: .failed) == [])
        #expect(ignoring.taskFinished(label: "other", state: .succeeded) == [.finished(.succeeded)])

        var strict = try GraphFixtures.run(GraphFixtures.noopGraph(["flaky"]))
        _ = strict.begin()
        #expect(strict.taskFinished(label: "flaky", state: .failed) == [.finished(.failed)])
        #expect(strict.status == .failed)
    }

    @Test func handledFailureDoesNotFailTheGraph() throws {
        let definition = GraphFixtures.noopGraph(["check", "fix"], waits: ["fix": WaitOn(all: ["check": [.failed]])])
        var run = try GraphFixtures.run(definition)
        _ = run.begin()
        #expect(run.taskFinished(label: "check", state: .failed) == [.start(label: "fix")])
        #expect(run.taskFinished(label: "fix", state: .succeeded) == [.finished(.succeeded)])

        // A timeout is not handled by a `failed` branch: it is terminal and fails the graph.
        var timedOut = try GraphFixtures.run(definition)
        _ = timedOut.begin()
        #expect(timedOut.taskFinished(label: "check", state: .timeout) == [.finished(.failed)])
        #expect(timedOut.states["fix"] == .failed)
    }

    @Test func failingCancelsRunningAndFailsPendingTasks() throws {
        let definition = GraphFixtures.noopGraph(
            ["a", "b", "c", "after-a"], waits: ["after-a": WaitOn(all: ["a": [.finished]])])
        var run = try GraphFixtures.run(definition)
        #expect(run.begin() == [.start(label: "a"), .start(label: "b"), .start(label: "c")])
        #expect(run.taskFinished(label: "b", state: .failed) == [.cancel(label: "a"), .cancel(label: "c"), .finished(.failed)])
        #expect(run.status == .failed)
        #expect(run.states == ["a": .running, "b": .failed, "c": .running, "after-a": .failed])
        // The cancelled tasks report later: recorded, nothing else happens.
        #expect(run.taskFinished(label: "a", state: .cancelled) == [])
        #expect(run.taskFinished(label: "c", state: .succeeded) == [])
        #expect(run.states == ["a": .cancelled, "b": .failed, "c": .succeeded, "after-a": .failed])
        #expect(run.status == .failed)
        #expect(run.cancel() == [])
    }

    @Test func emptyGraphSucceedsAtOnce() throws {
        var run = try GraphFixtures.run(GraphFixtures.noopGraph([]))
        #expect(run.begin() == [.finished(.succeeded)])
        #expect(run.begin() == [])
    }
}

@Suite("Graph runs: pause, resume, cancel and stray reports")
struct GraphRunControlTests {
    private let chain = GraphFixtures.noopGraph(
        ["first", "second", "third"], waits: ["second": WaitOn(all: ["first": [.finished]]), "third": WaitOn(all: ["second": [.finished]])])

    @Test func pauseLetsRunningTasksFinishAndResumeStartsWhatIsReady() throws {
        var run = try GraphFixtures.run(chain)
        #expect(run.pause() == [])
        #expect(run.status == .pending)
        _ = run.begin()
        #expect(run.pause() == [])
        #expect(run.status == .paused)
        #expect(run.pause() == [])
        #expect(run.taskFinished(label: "first", state: .succeeded) == [])
        #expect(run.states["second"] == .pending)
        #expect(run.status == .paused)
        #expect(run.resume() == [.start(label: "second")])
        #expect(run.status == .running)
        #expect(run.resume() == [])
        #expect(run.taskFinished(label: "second", state: .succeeded) == [.start(label: "third")])
        #expect(run.taskFinished(label: "third", state: .succeeded) == [.finished(.succeeded)])
    }

    @Test func graphFinishesWhilePausedWhenNothingIsLeft() throws {
        var run = try GraphFixtures.run(GraphFixtures.noopGraph(["only", "other"]))
        _ = run.begin()
        _ = run.pause()
        #expect(run.taskFinished(label: "only", state: .succeeded) == [])
        #expect(run.taskFinished(label: "other", state: .succeeded) == [.finished(.succeeded)])
        #expect(run.status == .succeeded)
        #expect(run.resume() == [])
    }

    @Test func failureWhilePausedFailsTheGraph() throws {
        var run = try GraphFixtures.run(chain)
        _ = run.begin()
        _ = run.pause()
        #expect(run.taskFinished(label: "first", state: .cancelled) == [])
        #expect(run.status == .paused)  // `second` waits on `finished`, so the cancellation is handled
        var strict = try GraphFixtures.run(GraphFixtures.noopGraph(["solo", "next"], waits: ["next": WaitOn(all: ["solo": [.succeeded]])]))
        _ = strict.begin()
        _ = strict.pause()
        #expect(strict.taskFinished(label: "solo", state: .failed) == [.finished(.failed)])
        #expect(strict.states["next"] == .failed)
        #expect(strict.resume() == [])
    }

    @Test func cancelStopsRunningAndCancelsPendingTasks() throws {
        var run = try GraphFixtures.run(chain)
        _ = run.begin()
        _ = run.taskFinished(label: "first", state: .succeeded)
        #expect(run.cancel() == [.cancel(label: "second"), .finished(.cancelled)])
        #expect(run.status == .cancelled)
        #expect(run.states == ["first": .succeeded, "second": .running, "third": .cancelled])
        #expect(run.cancel() == [])
        #expect(run.taskFinished(label: "second", state: .cancelled) == [])
        #expect(run.states["second"] == .cancelled)
        #expect(run.resume() == [])
        #expect(run.begin() == [])
    }

    @Test func cancelBeforeBeginAndWhilePaused() throws {
        var notStarted = try GraphFixtures.run(chain)
        #expect(notStarted.cancel() == [.finished(.cancelled)])
        #expect(notStarted.states.values.allSatisfy { $0 == .cancelled })
        #expect(notStarted.begin() == [])

        var paused = try GraphFixtures.run(chain)
        _ = paused.begin()
        _ = paused.pause()
        #expect(paused.cancel() == [.cancel(label: "first"), .finished(.cancelled)])
    }

    @Test func strayReportsChangeNothing() throws {
        var run = try GraphFixtures.run(chain)
        #expect(run.taskFinished(label: "first", state: .succeeded) == [])  // not begun
        _ = run.begin()
        let before = run
        #expect(run.taskFinished(label: "ghost", state: .succeeded) == [])
        #expect(run.taskFinished(label: "second", state: .succeeded) == [])  // pending, never started
        #expect(run.taskFinished(label: "first", state: .running) == [])
        #expect(run.taskFinished(label: "first", state: .pending) == [])
        #expect(run == before)

        #expect(run.taskFinished(label: "first", state: .succeeded) == [.start(label: "second")])
        let afterFirst = run
        #expect(run.taskFinished(label: "first", state: .succeeded) == [])
        #expect(run.taskFinished(label: "first", state: .failed) == [])
        #expect(run == afterFirst)
    }

    @Test func runRoundTripsThroughJSON() throws {
        var run = try GraphFixtures.run(chain)
        _ = run.begin()
        _ = run.taskFinished(label: "first", state: .succeeded)
        _ = run.pause()
        let decoded = try WireFormat.decode(GraphRun.self, from: WireFormat.encode(run))
        #expect(decoded == run)
        var resumed = decoded
        #expect(resumed.taskFinished(label: "second", state: .succeeded) == [])
        #expect(resumed.resume() == [.start(label: "third")])
        let actions: [GraphRun.Action] = [.start(label: "a"), .cancel(label: "b"), .finished(.failed)]
        #expect(try WireFormat.decode([GraphRun.Action].self, from: WireFormat.encode(actions)) == actions)
    }
}
