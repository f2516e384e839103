"""The bounded buffer (producer-consumer, Dijkstra 1965), with semaphores.

Producers put items into a buffer of SIZE slots and consumers take them
out.  `empty` counts free slots, `full` counts filled ones, and a lock
guards the buffer itself: a producer waits when the buffer is full, a
consumer when it is empty.  Every item produced is consumed exactly once,
and the buffer never holds more than SIZE items (`empty` never goes below
zero, which the semaphore guarantees; `full` could not exceed SIZE).
"""

import queue
import threading

SIZE = 4
PRODUCERS = 3
CONSUMERS = 2
ITEMS = 10  # per producer

buffer = queue.SimpleQueue()         # the slots' contents; the semaphores bound it
empty = threading.Semaphore(SIZE)
full = threading.Semaphore(0)
mutex = threading.Lock()
consumed = queue.Queue()


def producer(p):
    for n in range(ITEMS):
        empty.acquire()
        with mutex:
            buffer.put((p, n))
        full.release()


def consumer():
    while True:
        full.acquire()
        with mutex:
            item = buffer.get()
            if item is not None:
                consumed.put(item)  # under the lock: `consumed` keeps the order items left the buffer
        empty.release()
        if item is None:
            return


consumers = [threading.Thread(target=consumer) for _ in range(CONSUMERS)]
producers = [threading.Thread(target=producer, args=(p,)) for p in range(PRODUCERS)]
for t in consumers + producers:
    t.start()
for t in producers:
    t.join()
for _ in consumers:  # one "stop" per consumer
    empty.acquire()
    with mutex:
        buffer.put(None)
    full.release()
for t in consumers:
    t.join()

items = []
while not consumed.empty():
    items.append(consumed.get())
assert sorted(items) == [(p, n) for p in range(PRODUCERS) for n in range(ITEMS)], "an item was lost or doubled"
for p in range(PRODUCERS):  # one producer's items come out in the order it made them
    mine = [n for q, n in items if q == p]
    assert mine == sorted(mine)
print(f"{len(items)} items produced and consumed, each once, in order per producer")
