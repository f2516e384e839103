"""A small map-reduce: mapper threads count words in their share of the lines, a reducer merges.

The text is split into MAPPERS shares; each mapper counts the words of its
share and puts its partial counts into a queue; the main thread reduces
them as they arrive and prints the most frequent words.
"""

import collections
import queue
import threading

TEXT = """
it was the best of times it was the worst of times it was the age of wisdom
it was the age of foolishness it was the epoch of belief it was the epoch of
incredulity it was the season of light it was the season of darkness it was
the spring of hope it was the winter of despair we had everything before us
we had nothing before us we were all going direct to heaven we were all going
direct the other way
""".strip().splitlines()

MAPPERS = 3
partials = queue.Queue()


def mapper(lines):
    counts = collections.Counter()
    for line in lines:
        counts.update(line.split())
    partials.put(dict(counts))


shares = [TEXT[i::MAPPERS] for i in range(MAPPERS)]
threads = [threading.Thread(target=mapper, args=(share,)) for share in shares]
for t in threads:
    t.start()

total = collections.Counter()
for _ in threads:
    total.update(partials.get())
for t in threads:
    t.join()

for word, n in sorted(total.items(), key=lambda kv: (-kv[1], kv[0]))[:5]:
    print(f"{word:8} {n}")
print("words:", sum(total.values()))
