"""The listener's associations wait for their work instead of polling for it.

pynetdicom runs two threads per association, and each checks for work every
millisecond: the connection's thread (DULServiceProvider) sleeps 1 ms whenever
it found nothing to do, the association's thread sleeps 1 ms before every look
at its queues. A C-STORE crosses both threads twice (the request in, the answer
out), so a peer that sends an instance, waits for the answer and sends the next
spent more time waiting on those sleeps than the listener spent storing (199
instances/s at 2.5 ms of CPU each), and an idle association still woke its
threads 2,000 times a second.

Here each thread sleeps until there is something for it, at most WAIT seconds
(the timers, the ARTIM and the idle timeout, are checked at least that often):

- the connection's thread waits in select() on the peer's socket and on a wake
  pair of sockets, written to whenever something is queued for it (a PDU to
  send, a state machine event) or it is told to stop;
- the association's thread waits on an Event set whenever something is queued
  for it (a whole DIMSE message, an A-RELEASE or A-ABORT from the peer).

Only how the threads wait changes: every check pynetdicom's loops make is made
in the same order (the connection's loop is pynetdicom's own; the association's
is its acceptor loop as pynetdicom 3.0 writes it), and the pause that
pynetdicom's send_*() use (`_reactor_checkpoint`) is kept. Associations this
process requests (the SCU's) are pynetdicom's as they are.
"""

import select
import socket
import threading

# The longest a thread sleeps without being woken: how late a timer may be seen.
WAIT = 0.05


def wait_for_work(assoc):
    """Make an acceptor association (built, not started) wait for its work."""
    work = threading.Event()
    waker, woken = socket.socketpair()
    waker.setblocking(False)
    woken.setblocking(False)
    dul = assoc.dul

    def wake_connection():
        try:
            waker.send(b"\0")
        except OSError:  # the buffer is full (it is awake already), or it has ended
            pass

    _after_put(dul.to_provider_queue, wake_connection)
    _after_put(dul.event_queue, wake_connection)
    _after_put(dul.to_user_queue, work.set)
    _after_put(assoc.dimse.msg_queue, work.set)
    # pynetdicom's loop sleeps this long when it found nothing: it now waits in
    # _is_transport_event, and goes round at once after anything else.
    dul._run_loop_delay = 0
    transport_event = dul._is_transport_event
    stop_dul = dul.stop_dul

    def waiting_transport_event():
        if dul.event_queue.empty() and dul.to_provider_queue.empty() and not dul._kill_thread:
            _wait_readable(dul, woken)
        return transport_event()

    def stopping_dul():
        if dul.state_machine.current_state == "Sta1":
            dul._kill_thread = True
            wake_connection()
        return stop_dul()

    dul._is_transport_event = waiting_transport_event
    dul.stop_dul = stopping_dul
    run = assoc.run

    def running():
        try:
            run()
        finally:
            # Closed once the connection's thread has ended, by the only thread
            # left that could wake it; a connection's thread still running (it
            # ends by itself) leaves them to the garbage collector.
            dul.join(1)
            if not dul.is_alive():
                waker.close()
                woken.close()

    assoc.run = running
    assoc._run_reactor = lambda: _run_acceptor_reactor(assoc, work)


def _after_put(queue, wake):
    put = queue.put

    def put_and_wake(item, block=True, timeout=None):
        put(item, block, timeout)
        wake()

    queue.put = put_and_wake


def _wait_readable(dul, woken):
    """Wait until the peer's socket has data (or closed), or the connection's thread
    is woken, for at most WAIT seconds."""
    transport = dul.socket
    peer = getattr(transport, "socket", None) if transport is not None else None
    watched = [woken]
    if peer is not None and getattr(transport, "_is_connected", False):
        pending = getattr(peer, "pending", None)  # TLS: decrypted bytes select() cannot see
        if pending is not None and pending():
            return
        watched.append(peer)
    try:
        ready, _, _ = select.select(watched, [], [], WAIT)
    except (OSError, ValueError):  # the peer's socket closed under us: pynetdicom's check tells
        return
    if woken in ready:
        try:
            while woken.recv(4096):
                pass
        except OSError:  # drained
            pass


def _run_acceptor_reactor(assoc, work):
    """pynetdicom's acceptor loop (Association._run_reactor), waiting on `work`
    instead of sleeping 1 ms before each look."""
    from pynetdicom import evt
    from pynetdicom.association import LOGGER

    while not assoc._kill:
        # The pause of pynetdicom's send_*() (and of dicom/workflow.py): they must
        # take their answer off the queues before this loop does. Waiting for work,
        # the loop takes nothing off them: it is paused already, and a send from
        # another thread need not wait for the wait to end.
        assoc._is_paused = True
        work.wait(WAIT)
        work.clear()
        assoc._reactor_checkpoint.wait()
        assoc._is_paused = False

        context_id, msg = assoc.dimse.get_msg(block=False)
        if msg:
            assoc._serve_request(msg, context_id)
            work.set()  # another message may be queued already: look again at once

        if assoc.is_established and assoc.acse.is_release_requested():
            assoc.acse.send_release(is_response=True)
            LOGGER.info("Association Released")
            assoc.is_released = True
            assoc.is_established = False
            evt.trigger(assoc, evt.EVT_RELEASED, {})
            assoc.kill()
            return

        if assoc.acse.is_aborted():
            log_msg = "Association Aborted"
            if assoc.acse.is_aborted("a-p-abort"):
                log_msg += " (A-P-ABORT)"
            LOGGER.info(log_msg)
            # EVT_ACSE_RECV fires for the abort's subscribers.
            assoc.dul.receive_pdu(wait=False)
            assoc.is_aborted = True
            assoc.is_established = False
            evt.trigger(assoc, evt.EVT_ABORTED, {})
            assoc.kill()
            return

        if not assoc.dul.is_alive():
            assoc.kill()
            return

        if assoc.dul.idle_timer_expired():
            LOGGER.error("Network timeout reached")
            if assoc.network_timeout_response == "A-RELEASE":
                assoc._is_paused = True
                assoc._reactor_checkpoint.wait()
                assoc.release()
                assoc._is_paused = False
            else:
                assoc.abort()
            assoc.kill()
            return
