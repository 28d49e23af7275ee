"""The loop: the reactor and the executor, the two halves of the model.

    One thread owns every socket and the selector. Blocking disk work (stat,
    open, read) runs on worker threads, which hand their results back to that
    thread through one thread-safe call.

``reactor`` is that thread's event loop (readiness, timers, the cross-thread
wake-up); ``executor`` is the pool of worker threads. Read them first: every
other package is built on these two.

May import: the standard library only. Nothing here knows what HTTP is
(tests/meta/test_layering.py enforces it).
"""
