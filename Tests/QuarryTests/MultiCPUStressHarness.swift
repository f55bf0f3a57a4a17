// MultiCPUStressHarness: runs Tests/Scenarios/MultiCPUStress on host threads as virtual
// CPUs: lays out its state, starts the CPUs (with the SIGALRM timer whose handler calls
// the scenario's `interrupt` on the interrupted CPU when the configuration asks for
// interrupts), then has CPU 0 finish and check it; the caller owns the Quarry and checks
// what is left.
// Neighbours: TestThread (the threads, the timer), VirtualCPU (CPUs and interrupts),
// TestSupport (ExpectChecks); ConcurrencyTests and ReclaimStressTests (the users).

import QuarryScenarios
import Testing

@testable import Quarry

/// What `runMultiCPUStress` saw.
struct MultiCPUStressRun {
    /// `finish`'s totals (it has checked them).
    var report: MultiCPUStressReport
    /// Interrupt bodies each CPU ran (all zero without interrupts).
    var handlerRuns: [UInt]
    /// Wall time of the threads, warm-up to the last `run`'s end (not `finish`).
    var seconds: Double
}

/// Runs MultiCPUStress over `quarry` on `configuration.cpus` threads, from `caches` (added
/// in order, for `.caches`) or the malloc front. With `configuration.interrupts`, the timer
/// fires every `interruptMicroseconds` and each CPU's warm-up runs the handler's work
/// eight times outside it, then `warmUp(cpu)`, before the handler is installed. Then CPU 0
/// finishes the scenario, its checks reported at `sourceLocation`.
func runMultiCPUStress(
    quarry: Quarry<ThreadPlatform<16>>, source: MultiCPUStress<ThreadPlatform<16>>.Source,
    caches: [SlabCache<ThreadPlatform<16>>] = [], configuration: MultiCPUStress<ThreadPlatform<16>>.Configuration,
    interruptMicroseconds: Int = 0, warmUp: @escaping @Sendable (Int) -> Void = { _ in },
    sourceLocation: SourceLocation = #_sourceLocation
) -> MultiCPUStressRun {
    typealias Stress = MultiCPUStress<ThreadPlatform<16>>
    let cpus = configuration.cpus
    let memory = UnsafeMutableRawPointer.allocate(
        byteCount: Stress.bytes(cpus: cpus, listCapacity: configuration.listCapacity), alignment: 64)
    // The handler reaches the scenario through its context pointer.
    let stress = UnsafeMutablePointer<Stress>.allocate(capacity: 1)
    stress.initialize(to: Stress(quarry: quarry, source: source, memory: memory, configuration: configuration))
    for c in caches { stress.pointee.add(c) }
    defer {
        stress.deinitialize(count: 1)
        stress.deallocate()
        memory.deallocate()
    }
    nonisolated(unsafe) let shared = stress
    let clock = ContinuousClock()
    let start = clock.now
    let handlerRuns: [UInt]
    if configuration.interrupts {
        precondition(interruptMicroseconds > 0, "runMultiCPUStress: interrupts without a timer period")
        let body: @convention(c) (UnsafeMutableRawPointer?) -> Void = { context in
            context!.assumingMemoryBound(to: MultiCPUStress<ThreadPlatform<16>>.self).pointee
                .interrupt(cpu: ThreadPlatform<16>.cpuIndex)
        }
        handlerRuns = runOnCPUsWithTimer(
            cpus, microseconds: interruptMicroseconds,
            warmUp: { cpu in
                // What the handler runs, once outside it (generic metadata is made here).
                for _ in 0..<8 { shared.pointee.interrupt(cpu: cpu) }
                warmUp(cpu)
                VirtualCPU.setInterruptBody(body, context: UnsafeMutableRawPointer(shared))
            }
        ) { cpu in
            shared.pointee.run(cpu: cpu)
            VirtualCPU.setInterruptBody(nil, context: nil)
        }
    } else {
        handlerRuns = runOnCPUs(cpus) { cpu in shared.pointee.run(cpu: cpu) }
    }
    let elapsed = clock.now - start
    let report = VirtualCPU.withCPU(0) { stress.pointee.finish(ExpectChecks(sourceLocation)) }
    let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) * 1e-18
    return MultiCPUStressRun(report: report, handlerRuns: handlerRuns, seconds: seconds)
}
