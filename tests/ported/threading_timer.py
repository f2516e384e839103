# The Timer example of the `threading` documentation ("after 30 seconds,
# 'hello, world' will be printed"), with 30.0 shortened to 0.3; then a second
# timer, cancelled before it fires, as the documentation's cancel() describes.
from threading import Timer


def hello():
    print("hello, world")


t = Timer(0.3, hello)
t.start()  # after 0.3 seconds, "hello, world" will be printed

never = Timer(30.0, print, args=["this timer was cancelled: it never prints"])
never.start()
never.cancel()
never.join()
t.join()
print("timers done")
