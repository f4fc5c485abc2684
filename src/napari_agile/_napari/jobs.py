"""Long work off the GUI thread: one napari thread worker at a time, with a progress bar, Cancel, and the dock's
status line, where every error arrives in full (bad input as its message, anything else with its type)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from napari.qt.threading import create_worker
from napari.utils import progress as napari_progress
from napari.utils.notifications import show_error, show_info, show_warning
from qtpy.QtCore import QObject, Qt, Signal
from qtpy.QtWidgets import QLabel, QProgressBar, QPushButton

from napari_agile.errors import AgileInputError

log = logging.getLogger(__name__)


class Cancelled(Exception):
    """Raised inside a worker (from the progress callback) when the user pressed Cancel."""


class _Relay(QObject):
    """Carries progress from a worker thread to the GUI thread (queued signal)."""

    progress = Signal(str, int, int)


class Progress:
    """The engine's `progress(done, total)` callback, run in the worker: relays progress, raises when cancelled."""

    def __init__(self, relay: _Relay, cancel: threading.Event, label: str) -> None:
        self.relay, self.cancel, self.label = relay, cancel, label

    def __call__(self, done: int, total: int) -> None:
        if self.cancel.is_set():
            raise Cancelled
        self.relay.progress.emit(self.label, int(done), int(total))

    def phase(self, label: str) -> None:
        """Name the next stage of a job (shown in the progress bar) and start it undetermined."""
        self.label = label
        self(0, 0)


class Jobs:
    """The dock's job runner and its bottom row: the progress bar, Cancel and the status line."""

    def __init__(self, alive: dict, on_busy: Callable[[bool], None]) -> None:
        self.alive, self.on_busy = alive, on_busy  # alive["yes"]: False once the dock is gone
        self.worker: Any = None
        self.job = ""
        self.cancel_event = threading.Event()
        self._pbar: Any = None
        self._relay = _Relay()
        self._relay.progress.connect(self._on_progress)
        self.bar = QProgressBar()
        self.bar.setVisible(False)
        self.cancel_btn = QPushButton("Cancel")
        self.cancel_btn.setToolTip("Stop the running job at its next step (answers are already saved).")
        self.cancel_btn.setEnabled(False)
        self.cancel_btn.clicked.connect(lambda *_: self.cancel())
        self.status = QLabel("Open a tissue image, tick its layers, then Detect nuclei.")
        self.status.setWordWrap(True)
        self.status.setTextFormat(Qt.TextFormat.PlainText)
        font = self.status.font()
        font.setPointSizeF(font.pointSizeF() * 1.25)  # the question the user answers: readable at a glance
        self.status.setFont(font)

    def run(self, label: str, work: Callable[[Progress], Any], done: Callable[[Any], None]) -> None:
        """Run `work(progress)` in a thread worker; `done(result)` in the GUI thread; errors as notifications."""
        if self.worker is not None:
            show_warning(f"Still busy with '{self.job}': wait for it or press Cancel.")
            return
        self.cancel_event.clear()
        cancel, progress, alive = self.cancel_event, Progress(self._relay, self.cancel_event, label), self.alive
        connect = {  # handlers check `alive`: the viewer may have closed while the worker ran
            "returned": lambda result: alive["yes"] and self._on_returned(label, cancel, done, result),
            "errored": lambda err: alive["yes"] and self._on_error(label, err),
            "warned": lambda w: alive["yes"] and show_warning(str(w[0])),
            "finished": lambda: alive["yes"] and self._on_finished(),
        }
        self.job = label
        self.worker = create_worker(work, progress, _start_thread=False, _connect=connect)
        self.set_busy(True, label)
        self.worker.start()

    @property
    def busy(self) -> bool:
        return self.worker is not None

    def in_use(self) -> bool:
        """True (and says so) while a job runs: it may be reading the answers (adapt, suggest, save, predict)."""
        if self.worker is None:
            return False
        show_warning(f"'{self.job}' is using the answers right now: answer again when it is done.")
        return True

    def cancel(self) -> None:
        """Ask the running job to stop at its next progress step; a job that finishes first is shown as done."""
        if self.worker is not None:
            self.cancel_event.set()
            self.status.setText(f"Cancelling {self.job}…")

    def guard(self, action: Callable[[], None]) -> None:
        """Run a GUI-thread action; bad input becomes a notification."""
        try:
            action()
        except AgileInputError as err:
            self.fail(str(err))

    def fail(self, message: str) -> None:
        """An error, in full in the status line (a toast is cut off) and as a notification."""
        self.status.setText(f"Error: {message}")
        show_error(message)

    def set_busy(self, busy: bool, label: str = "") -> None:
        """Show the job (bar, Cancel, a napari progress bar) and let the dock enable what can run now."""
        self.on_busy(busy)
        self.cancel_btn.setEnabled(busy)
        self.bar.setVisible(busy)
        self.bar.setRange(0, 0)
        if busy:
            self.status.setText(f"{label}…")
            self._pbar = napari_progress(total=0, desc=label)
        elif self._pbar is not None:
            self._pbar.close()
            self._pbar = None

    @staticmethod
    def _on_returned(label: str, cancel: threading.Event, done: Callable[[Any], None], result: Any) -> None:
        """A job that finished is shown even if Cancel came too late to stop it (its work is done and saved)."""
        if cancel.is_set():
            show_info(f"{label} had finished before it could stop: its result is shown.")
        done(result)

    def _on_progress(self, label: str, current: int, total: int) -> None:
        pbar = self._pbar  # updating it may run the event loop, where the job can finish and close it
        if not self.alive["yes"] or pbar is None:
            return
        self.bar.setRange(0, total)  # total 0: a stage of unknown length (busy indicator)
        self.bar.setValue(current)
        pbar.total = total
        pbar.n = current
        pbar.set_description(label)
        if self._pbar is pbar:
            pbar.refresh()

    def _on_error(self, label: str, err: Exception) -> None:
        if isinstance(err, Cancelled):
            show_info(f"{label}: cancelled.")
            self.status.setText(f"{label}: stopped.")
        elif isinstance(err, AgileInputError):
            self.fail(str(err))
        else:
            log.error("%s failed", label, exc_info=err)
            self.fail(f"{label} failed: {type(err).__name__}: {err}")

    def _on_finished(self) -> None:
        self.worker = None
        if self.status.text().startswith("Cancelling"):
            self.status.setText(f"{self.job}: stopped.")
        self.set_busy(False)
