"""archive.dimse.ReactorCheckpoint: pynetdicom's pause of a reactor, without the race
that let a reactor take a send's answer (the reactor says "running" inside its wait)."""

import threading

from pynetdicom import AE
from pynetdicom.association import Association

from archive.dimse import ReactorCheckpoint


def test_every_association_gets_the_checkpoint():
    assoc = Association(AE(), "requestor")
    assert isinstance(assoc._reactor_checkpoint, ReactorCheckpoint)


def test_passing_the_checkpoint_says_running_and_a_cleared_one_holds():
    assoc = Association(AE(), "requestor")
    checkpoint = assoc._reactor_checkpoint
    assoc._is_paused = True
    assert checkpoint.wait() and assoc._is_paused is False
    checkpoint.clear()
    assoc._is_paused = True
    assert not checkpoint.wait(timeout=0.05) and assoc._is_paused is True  # held: still paused
    passed = []
    waiter = threading.Thread(target=lambda: passed.append(checkpoint.wait(timeout=5)))
    waiter.start()
    checkpoint.set()
    waiter.join(5)
    assert passed == [True] and assoc._is_paused is False
