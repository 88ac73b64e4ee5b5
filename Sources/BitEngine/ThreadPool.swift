import CBitKernels
import Foundation
import Synchronization

/// A fixed set of worker threads that run one parallel loop at a time.
///
/// Tasks are claimed dynamically, but every task writes a disjoint part of the output and
/// uses only its own thread's scratch memory, so results do not depend on which thread ran
/// which task. Workers spin briefly before sleeping: a network runs dozens of short
/// parallel loops per inference, and a condition-variable wake-up per loop would cost more
/// than many of the loops themselves. Every spin iteration pauses (x86 PAUSE, ARM YIELD),
/// so a spinning core leaves the pipeline and memory bandwidth to the others, and the spin
/// is bounded (about a millisecond) before the worker sleeps.
final class ThreadPool: @unchecked Sendable {
    let threadCount: Int
    private let shared: SharedState

    /// Owned by the workers as well as the pool, so it outlives the pool's deinit until
    /// every worker has seen the stop signal.
    private final class SharedState: @unchecked Sendable {
        let lock = NSCondition()
        let generation = Atomic<Int>(0)
        let nextTask = Atomic<Int>(0)
        let finishedWorkers = Atomic<Int>(0)
        var taskCount = 0
        var job: ((_ task: Int, _ thread: Int) -> Void)?
        var stopping = false

        func work(thread: Int) {
            guard let job else { return }
            while true {
                let task = nextTask.add(1, ordering: .relaxed).oldValue
                if task >= taskCount { return }
                job(task, thread)
            }
        }

        func workerLoop(index: Int) {
            var seen = 0
            while true {
                var current = generation.load(ordering: .acquiring)
                var spins = 0
                while current == seen && spins < 20_000 {
                    bk_spin_pause()
                    spins += 1
                    current = generation.load(ordering: .acquiring)
                }
                if current == seen {
                    lock.lock()
                    while generation.load(ordering: .acquiring) == seen { lock.wait() }
                    lock.unlock()
                    current = generation.load(ordering: .acquiring)
                }
                seen = current
                lock.lock()
                let stop = stopping
                lock.unlock()
                if stop { return }
                work(thread: index)
                finishedWorkers.add(1, ordering: .releasing)
            }
        }
    }

    init(threadCount: Int) {
        self.threadCount = max(1, threadCount)
        shared = SharedState()
        for index in 1..<self.threadCount {
            let state = shared
            let thread = Thread { state.workerLoop(index: index) }
            thread.name = "bitengine-\(index)"
            thread.stackSize = 1 << 20
            thread.start()
        }
    }

    deinit {
        shared.lock.lock()
        shared.stopping = true
        shared.generation.add(1, ordering: .releasing)
        shared.lock.broadcast()
        shared.lock.unlock()
    }

    /// Runs `body(task, thread)` for every task in 0..<tasks and returns when all are done.
    func run(tasks: Int, _ body: (_ task: Int, _ thread: Int) -> Void) {
        guard tasks > 0 else { return }
        if threadCount == 1 || tasks == 1 {
            for task in 0..<tasks { body(task, 0) }
            return
        }
        withoutActuallyEscaping(body) { escapable in
            shared.lock.lock()
            shared.job = escapable
            shared.taskCount = tasks
            shared.nextTask.store(0, ordering: .relaxed)
            shared.finishedWorkers.store(0, ordering: .relaxed)
            shared.generation.add(1, ordering: .releasing)
            shared.lock.broadcast()
            shared.lock.unlock()

            shared.work(thread: 0)

            // Workers finish within the time of one task; spinning beats sleeping here.
            while shared.finishedWorkers.load(ordering: .acquiring) < threadCount - 1 { bk_spin_pause() }
            shared.lock.lock()
            shared.job = nil
            shared.lock.unlock()
        }
    }
}
