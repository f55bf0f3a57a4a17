// TestHarness: named checks, their counts, and the exit through QEMU's isa-debug-exit;
// HarnessChecks, the scenarios' (Tests/Scenarios) checks as PASS/FAIL lines.
// Neighbours: Console.swift (output), Kernel.swift and PlatformChecks.swift (the checks),
// AllocatorSuite.swift (the allocator's checks), Makefile `qemu-test` (reads the output),
// Tests/Scenarios/ScenarioChecks.swift (the protocol; the host's side is #expect).

import CQuarrySupport
import Quarry
import Synchronization

/// Output contract, read by `make qemu-test`:
/// - one line per check: `PASS name` or `FAIL name: detail`;
/// - at the end exactly one line `N passed, M failed`;
/// - then QEMU exits with status 67 (all passed) or 69 (any failure or a CPU exception).
///
/// Checks may run on any CPU at once; the counters are atomic and each line is
/// printed under the console lock.
enum TestHarness {
    static let passed = Atomic<Int>(0)
    static let failed = Atomic<Int>(0)

    /// isa-debug-exit (`-device isa-debug-exit,iobase=0xf4,iosize=0x04`): writing v
    /// makes QEMU exit with status (v << 1) | 1.
    static let debugExitPort: UInt16 = 0xF4
    enum ExitCode: UInt8 {
        case success = 0x21  // QEMU status 67
        case failure = 0x22  // QEMU status 69
    }

    /// Records a check: `PASS name` when `condition` holds, else `FAIL name: detail`.
    static func check(_ name: StaticString, _ condition: Bool, _ detail: StaticString) {
        if condition {
            pass(name)
        } else {
            fail(name) { Console.print(detail) }
        }
    }

    /// `FAIL name: got A, expected B` unless `actual == expected`.
    static func checkEqual(_ name: StaticString, _ actual: Int, _ expected: Int) {
        if actual == expected {
            pass(name)
        } else {
            fail(name) {
                Console.print("got ")
                Console.decimal(actual)
                Console.print(", expected ")
                Console.decimal(expected)
            }
        }
    }

    /// `FAIL name: got A, expected at least B` unless `actual >= minimum`.
    static func checkAtLeast(_ name: StaticString, _ actual: Int, _ minimum: Int) {
        if actual >= minimum {
            pass(name)
        } else {
            fail(name) {
                Console.print("got ")
                Console.decimal(actual)
                Console.print(", expected at least ")
                Console.decimal(minimum)
            }
        }
    }

    static func pass(_ name: StaticString) {
        passed.add(1, ordering: .relaxed)
        Console.line {
            Console.print("PASS ")
            Console.print(name)
            Console.newline()
        }
    }

    /// Records a failure; `detail` prints the text after `FAIL name: `.
    static func fail(_ name: StaticString, _ detail: () -> Void) {
        failed.add(1, ordering: .relaxed)
        Console.line {
            Console.print("FAIL ")
            Console.print(name)
            Console.print(": ")
            detail()
            Console.newline()
        }
    }

    /// Prints `N passed, M failed` and leaves QEMU with the matching status.
    /// Call on the boot CPU once every check has finished.
    static func finish() -> Never {
        let passes = passed.load(ordering: .acquiring)
        let failures = failed.load(ordering: .acquiring)
        Console.line {
            Console.decimal(passes)
            Console.print(" passed, ")
            Console.decimal(failures)
            Console.print(" failed")
            Console.newline()
        }
        exit(failures == 0 && passes > 0 ? .success : .failure)
    }

    /// Leaves QEMU; on a machine without isa-debug-exit, halts this CPU for good.
    static func exit(_ code: ExitCode) -> Never {
        quarry_outb(debugExitPort, code.rawValue)
        while true {
            quarry_cli()
            quarry_hlt()
        }
    }
}

/// A scenario's checks (Tests/Scenarios) as TestHarness checks.
struct HarnessChecks: ScenarioChecks {
    func check(_ name: StaticString, _ condition: Bool, _ detail: StaticString) {
        TestHarness.check(name, condition, detail)
    }

    func checkEqual(_ name: StaticString, _ actual: Int, _ expected: Int) {
        TestHarness.checkEqual(name, actual, expected)
    }
}
