# The Barrier example of the `threading` documentation: a client and a server
# thread that must both be ready; the helpers are filled in with a queue as
# the "connection", and the server serves three requests instead of for ever.
import queue
import threading

b = threading.Barrier(2, timeout=30)
connections = queue.Queue()
replies = queue.Queue()


def start_server():
    print("server started")


def accept_connection():
    return connections.get()


def process_server_connection(connection):
    replies.put(connection.upper())


def make_connection():
    return None


def process_client_connection(connection, n):
    connections.put(f"request {n}")
    print("client got", replies.get())


def server():
    start_server()
    b.wait()
    for _ in range(3):  # the documentation's server loops `while True`
        connection = accept_connection()
        process_server_connection(connection)


def client():
    b.wait()
    for n in range(3):  # the documentation's client loops `while True`
        connection = make_connection()
        process_client_connection(connection, n)


s = threading.Thread(target=server)
c = threading.Thread(target=client)
s.start()
c.start()
s.join()
c.join()
