// TestHooks: numbered points on the allocate and free paths where a test can run a
// simulated interrupt (a nested allocate or free on the same CPU). Checked builds only.
// Neighbours: HeapState (stores the hook), SlabCache and SlabCache+PerCPU (the points).

/// The points, in path order. Each is a step boundary where the per-CPU state is
/// consistent (a nested call may run there; see CPUCache's contract), including places
/// where the slot is claimed (the nested path), inside masked sections and under locks,
/// where on bare metal only an NMI can arrive.
@_spi(Testing)
public enum HookPoint: UInt32, Sendable {
    // Fast path of allocate.
    case allocateEnter = 0
    case allocateClaimed
    case allocateHandOut
    // Fast path of free.
    case freeEnter
    case freeValidated
    case freeClaimed
    // Slow paths.
    case allocateMiss
    case freeMiss
    case depotLocked
    case cacheLocked
    case pageLocked
    case magazineAllocated
    case flushing
    /// The end of an ordinary slow path (no lock held).
    case tidying
    /// Inside the tidy-up, under a lock: returning a reserve, trimming the depot.
    case trimming

    public static let count = 15
}

/// A C function the heap calls at every `HookPoint`, with the context the test gave.
@_spi(Testing)
public struct TestHook {
    public var function: @convention(c) (UnsafeMutableRawPointer?, UInt32) -> Void
    public var context: UnsafeMutableRawPointer?

    public init(
        function: @convention(c) (UnsafeMutableRawPointer?, UInt32) -> Void,
        context: UnsafeMutableRawPointer?
    ) {
        self.function = function
        self.context = context
    }
}

extension HeapState {
    /// Runs the test hook at `point`; compiles to nothing outside checked builds.
    @inline(__always)
    func hook(_ point: HookPoint) {
        #if QUARRY_CHECKED
        if let h = testHook { h.function(h.context, point.rawValue) }
        #endif
    }
}

extension Quarry {
    /// Installs (or with nil removes) the test hook. Call at quiescence. Checked builds only.
    @_spi(Testing)
    public func setTestHook(_ hook: TestHook?) {
        #if QUARRY_CHECKED
        heap.pointee.testHook = hook
        #endif
    }
}
