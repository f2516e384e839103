"""Dining philosophers (Dijkstra, 1965), with a fork per lock and ordered picking.

Five philosophers sit at a round table with a fork between each two; to eat
a philosopher needs both forks beside them.  Deadlock is avoided by taking
the lower-numbered fork first (resource ordering).  While eating a
philosopher reports it into a queue, so the order of the events is the
order of the meals: no two neighbours ever eat at once, everyone eats MEALS
times.
"""

import queue
import threading

PHILOSOPHERS = 5
MEALS = 4

forks = [threading.Lock() for _ in range(PHILOSOPHERS)]
events = queue.Queue()


def philosopher(i):
    left, right = i, (i + 1) % PHILOSOPHERS
    first, second = min(left, right), max(left, right)
    for meal in range(MEALS):
        with forks[first]:
            with forks[second]:
                events.put(("starts eating", i))
                events.put(("stops eating", i))


table = [threading.Thread(target=philosopher, args=(i,)) for i in range(PHILOSOPHERS)]
for p in table:
    p.start()
for p in table:
    p.join()

eating = set()
meals = [0] * PHILOSOPHERS
while not events.empty():
    what, i = events.get()
    if what == "starts eating":
        neighbours = {(i - 1) % PHILOSOPHERS, (i + 1) % PHILOSOPHERS}
        assert not eating & neighbours, f"philosopher {i} ate beside {eating & neighbours}"
        eating.add(i)
        meals[i] += 1
    else:
        eating.remove(i)
for i, n in enumerate(meals):
    print(f"philosopher {i} ate {n} times")
print("no neighbours ever ate together")
