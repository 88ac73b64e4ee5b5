import Foundation
import Synchronization

/// A fixed set of worker threads that run one parallel loop at a time.
///
/// Tasks are claimed dynamically, but every task writes a disjoint part of the output and
/// uses only its own thread's scratch memory, so results do not depend on which thread ran
/// which task. Workers spin briefly before sleeping: a network runs dozens of short
/// parallel loops per inference, and a condition-variable wake-up per loop would cost more
/// than many of the loops themselves.
final class ThreadPool: @unchecked Sendable {
    let threadCount: Int

    private let lock = NSCondition()
    private let generation = Atomic<Int>(0)
    private let nextTask = Atomic<Int>(0)
    private let finishedWorkers = Atomic<Int>(0)
    private var taskCount = 0
    private var job: ((_ task: Int, _ thread: Int) -> Void)?
    private var stopping = false
    private var threads: [Thread] = []

    init(threadCount: Int) {
        self.threadCount = max(1, threadCount)
        for index in 1..<self.threadCount {
            let thread = Thread { [unowned self] in self.workerLoop(index: index) }
            thread.name = "bitengine-\(index)"
            thread.stackSize = 1 << 20
            threads.append(thread)
            thread.start()
        }
    }

    deinit {
        lock.lock()
        stopping = true
        finishedWorkers.store(0, ordering: .relaxed)
        generation.add(1, ordering: .releasing)
        lock.broadcast()
        lock.unlock()
        // Workers hold `unowned self`; wait until they are gone before memory is freed.
        while finishedWorkers.load(ordering: .acquiring) < threadCount - 1 {
            sched_yield()
        }
    }

    /// Runs `body(task, thread)` for every task in 0..<tasks and returns when all are done.
    func run(tasks: Int, _ body: (_ task: Int, _ thread: Int) -> Void) {
        guard tasks > 0 else { return }
        if threadCount == 1 || tasks == 1 {
            for task in 0..<tasks { body(task, 0) }
            return
        }
        withoutActuallyEscaping(body) { escapable in
            lock.lock()
            job = escapable
            taskCount = tasks
            nextTask.store(0, ordering: .relaxed)
            finishedWorkers.store(0, ordering: .relaxed)
            generation.add(1, ordering: .releasing)
            lock.broadcast()
            lock.unlock()

            work(thread: 0)

            while finishedWorkers.load(ordering: .acquiring) < threadCount - 1 {
                // Workers finish within the time of one task; spinning beats sleeping here.
                _ = 0
            }
            lock.lock()
            job = nil
            lock.unlock()
        }
    }

    private func work(thread: Int) {
        guard let job else { return }
        while true {
            let task = nextTask.add(1, ordering: .relaxed).oldValue
            if task >= taskCount { return }
            job(task, thread)
        }
    }

    private func workerLoop(index: Int) {
        var seen = 0
        while true {
            var current = generation.load(ordering: .acquiring)
            var spins = 0
            while current == seen && spins < 20_000 {
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
            if stop {
                finishedWorkers.add(1, ordering: .releasing)
                return
            }
            work(thread: index)
            finishedWorkers.add(1, ordering: .releasing)
        }
    }
}
