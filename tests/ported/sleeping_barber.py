"""The sleeping barber (Dijkstra, 1965), with semaphores.

A barbershop has one barber, one barber chair and CHAIRS waiting chairs.
The barber sleeps until a customer arrives; a customer who finds a waiting
chair free takes it and waits to be served; one who finds them all taken
leaves.  The chairs are a semaphore a customer takes without waiting.
Every customer is served or leaves, exactly once; nobody is served while
no chair was free.
"""

import random
import threading
import time

CHAIRS = 3
CUSTOMERS = 12

chairs = threading.Semaphore(CHAIRS)      # free waiting chairs
customers = threading.Semaphore(0)        # customers waiting: the barber sleeps on it
barber_ready = threading.Semaphore(0)     # the barber calls the next customer
haircut_done = threading.Semaphore(0)
print_lock = threading.Lock()


def say(text):
    with print_lock:
        print(text)


def barber():
    while True:
        customers.acquire()               # sleep until a customer comes
        chairs.release()                  # the customer leaves the waiting chair...
        barber_ready.release()            # ...for the barber chair
        time.sleep(0.02)                  # cut
        haircut_done.release()


def customer(i):
    time.sleep(random.random() * 0.3)
    if not chairs.acquire(blocking=False):
        say(f"customer {i} left: no free chair")
        return
    customers.release()                   # wake the barber
    barber_ready.acquire()
    haircut_done.acquire()
    say(f"customer {i} got a haircut")


if __name__ == "__main__":
    threading.Thread(target=barber, daemon=True).start()
    visits = [threading.Thread(target=customer, args=(i,)) for i in range(CUSTOMERS)]
    for v in visits:
        v.start()
    for v in visits:
        v.join()
    say("the shop closes")
