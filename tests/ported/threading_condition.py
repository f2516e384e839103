# The producer-consumer example of the `threading` documentation's Condition
# section, with its helpers filled in: the items wait in a queue.SimpleQueue,
# three consumers take one item each, the producer makes three.
import queue
import threading

cv = threading.Condition()
items = queue.SimpleQueue()


def an_item_is_available():
    return not items.empty()


def get_an_available_item():
    return items.get_nowait()


def make_an_item_available(n):
    items.put(f"item {n}")


def consumer(i):
    # Consume one item
    with cv:
        while not an_item_is_available():
            cv.wait()
        print(f"consumer {i} got {get_an_available_item()}")


def producer():
    for n in range(3):
        # Produce one item
        with cv:
            make_an_item_available(n)
            cv.notify()


consumers = [threading.Thread(target=consumer, args=(i,)) for i in range(3)]
for c in consumers:
    c.start()
threading.Thread(target=producer).start()
for c in consumers:
    c.join()
print("all consumed:", items.empty())
