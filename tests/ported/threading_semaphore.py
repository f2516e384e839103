# The Semaphore example of the `threading` documentation: a bounded semaphore
# limits connections to a database server to five.  connectdb() is filled in:
# it takes one of five "connection slots" (a second semaphore that must never
# block, or more than five would be connected at once).
import threading

maxconnections = 5
# ...
pool_sema = threading.BoundedSemaphore(value=maxconnections)
slots = threading.Semaphore(maxconnections)
done = threading.Event()


class Connection:
    def close(self):
        slots.release()


def connectdb():
    if not slots.acquire(blocking=False):
        raise RuntimeError("more than five connections at once")
    return Connection()


def use_the_database(i):
    with pool_sema:
        conn = connectdb()
        try:
            # ... use connection ...
            print(f"client {i} used the database")
        finally:
            conn.close()


clients = [threading.Thread(target=use_the_database, args=(i,)) for i in range(12)]
for c in clients:
    c.start()
for c in clients:
    c.join()
print("clients done")
