// ScenarioChecks: what every scenario of Tests/Scenarios shares: how it reports a check
// (the kernel's TestHarness prints PASS/FAIL lines, the host's ExpectChecks calls #expect)
// and the error hook that records what a heap reported.
// Neighbours: Sources/QuarryKernel/TestHarness.swift (HarnessChecks), Tests/QuarryTests/
// TestSupport.swift (ExpectChecks), the scenarios that take a `C: ScenarioChecks`.

import Quarry

/// Where a scenario's checks go. A generic parameter, never `any` (Embedded Swift).
/// Names are static (the kernel prints them; interpolation would allocate).
public protocol ScenarioChecks {
    /// Passes when `condition` holds; `detail` says what went wrong when it does not.
    func check(_ name: StaticString, _ condition: Bool, _ detail: StaticString)
    /// Passes when `actual == expected`; a failure shows both.
    func checkEqual(_ name: StaticString, _ actual: Int, _ expected: Int)
}

/// The error hook scenarios install (`Quarry.setErrorHook(ErrorHookRecorder.hook)`):
/// counts every report by error and keeps the last one's cache and address. Plain
/// globals: one heap at a time may have it installed (the kernel runs its scenarios on the
/// boot CPU; the host runs the scenarios that install it in one serialized suite). Never
/// allocates.
public enum ErrorHookRecorder {
    nonisolated(unsafe) public static var calls = 0
    nonisolated(unsafe) static var counts = InlineArray<64, Int>(repeating: 0)
    /// The cache's C handle (`SlabCache.handle`), nil for a heap-wide report.
    nonisolated(unsafe) public static var lastCache: UnsafeMutableRawPointer? = nil
    nonisolated(unsafe) public static var lastAddress: UInt = 0

    public static let hook: ErrorHook = { error, cache, address in
        ErrorHookRecorder.calls += 1
        ErrorHookRecorder.counts[Int(error & 63)] += 1
        ErrorHookRecorder.lastCache = cache
        ErrorHookRecorder.lastAddress = address
    }

    public static func reset() {
        calls = 0
        var i = 0
        while i < 64 {
            counts[i] = 0
            i += 1
        }
        lastCache = nil
        lastAddress = 0
    }

    /// Reports of `error` since the last reset.
    public static func count(_ error: QuarryError) -> Int { counts[Int(error.rawValue & 63)] }

    /// Exactly one report since the last reset, of `error`.
    public static func reportedOnce(_ error: QuarryError) -> Bool { calls == 1 && count(error) == 1 }
}
