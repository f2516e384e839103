"""Readers-writers (Courtois, Heymans and Parnas, 1971), with a counting semaphore.

Any number of readers (here up to READERS) may read at once; a writer must
be alone.  A reader takes one permit of a semaphore of READERS permits, a
writer takes all of them, one by one, holding a lock so that two writers do
not each take half.  The readers and writers log what they do into a queue
while they hold their permits; replaying the log checks that no reader read
while a writer wrote and no two writers wrote at once.
"""

import queue
import threading
import time

READERS = 4
WRITERS = 2
ROUNDS = 3

permits = threading.Semaphore(READERS)
writer_lock = threading.Lock()
log = queue.Queue()


def reader(i):
    for _ in range(ROUNDS):
        permits.acquire()
        log.put(("read start", i))
        time.sleep(0.005)
        log.put(("read end", i))
        permits.release()


def writer(i):
    for _ in range(ROUNDS):
        with writer_lock:
            for _ in range(READERS):
                permits.acquire()
        log.put(("write start", i))
        time.sleep(0.005)
        log.put(("write end", i))
        permits.release(READERS)


threads = [threading.Thread(target=reader, args=(i,)) for i in range(READERS)]
threads += [threading.Thread(target=writer, args=(i,)) for i in range(WRITERS)]
for t in threads:
    t.start()
for t in threads:
    t.join()

reading, writing, reads, writes = 0, 0, 0, 0
while not log.empty():
    what, i = log.get()
    if what == "read start":
        assert writing == 0, "a reader read while a writer wrote"
        reading += 1
        reads += 1
    elif what == "read end":
        reading -= 1
    elif what == "write start":
        assert reading == 0 and writing == 0, "a writer was not alone"
        writing += 1
        writes += 1
    else:
        writing -= 1
print(f"{reads} reads and {writes} writes, writers always alone")
