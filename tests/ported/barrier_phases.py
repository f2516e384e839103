"""A barrier demo: workers compute in phases, none starting phase k+1 before all finished phase k.

Each of WORKERS threads prints a line per phase and waits at a barrier;
the barrier's action prints once per phase, when the last worker arrives.
The output shows every phase-k line before any phase-(k+1) line.
"""

import threading

WORKERS = 4
PHASES = 3


def phase_done():
    print("-- phase complete")


barrier = threading.Barrier(WORKERS, action=phase_done)


def worker(i):
    for phase in range(PHASES):
        print(f"worker {i} finished phase {phase}")
        barrier.wait()


threads = [threading.Thread(target=worker, args=(i,)) for i in range(WORKERS)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print("all phases done")
