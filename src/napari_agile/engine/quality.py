"""What a biologist checks after Adapt: how well the type's own answers are predicted when held out, and which
answers the adapted model now contradicts (a mislabel, or a cell the model cannot learn yet).

Held-out means each answer is predicted by weights adapted on the other answers only (engine/thresholds.py's folds), so
the agreement is an honest estimate on cells like the answered ones; nothing here looks at unanswered cells.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from napari_agile.engine.thresholds import held_out_probabilities, type_threshold
from napari_agile.errors import AgileInputError

if TYPE_CHECKING:
    from napari_agile.session import Session

#: fewer answers than this give no held-out figure (every fold would hold almost nothing to adapt on)
MIN_ANSWERS = 4


@dataclass(frozen=True)
class AnswerQuality:
    """One type's check: held-out agreement and confusion counts, and the answers the current model contradicts."""

    cell_type: str
    n_answers: int
    threshold: float
    agreement: float | None  # fraction of answers right when held out; None under MIN_ANSWERS answers
    confusion: dict[str, int]  # held out, at `threshold`: yes_said_yes, yes_said_no, no_said_yes, no_said_no
    contradicted: tuple[int, ...]  # cell ids whose answer the adapted model (all answers) types otherwise

    def summary(self) -> str:
        """One line for a status bar or a report."""
        if self.agreement is None:
            held = f"too few answers ({self.n_answers}, need {MIN_ANSWERS}) to check held out"
        else:
            right = self.confusion["yes_said_yes"] + self.confusion["no_said_no"]
            held = f"held out, {right} of {self.n_answers} answers predicted right ({self.agreement:.0%})"
        if not self.contradicted:
            return f"{self.cell_type}: {held}; the model agrees with every answer."
        shown = ", ".join(str(i) for i in self.contradicted[:8]) + (" ..." if len(self.contradicted) > 8 else "")
        return f"{self.cell_type}: {held}; the model contradicts {len(self.contradicted)} answer(s): cells {shown}."


def answer_quality(session: Session, cell_type: str) -> AnswerQuality:
    """The check of an adapted type (Session.quality): a clear error for a type that has no adapted weights."""
    if cell_type not in session.adapted:
        raise AgileInputError(
            f"{cell_type!r} is not adapted yet: answer a few of its cells and adapt it first "
            f"(adapted types: {session.adapted or 'none'})."
        )
    state = session.types[cell_type]
    threshold = type_threshold(session, cell_type)
    ids = np.array(list(state.answers), dtype=np.int64)
    said = np.array([bool(state.answers[i]) for i in ids])
    p_now, _ = session.probabilities(cell_type)
    now = p_now[session.cells.table.index.get_indexer(ids)] >= threshold
    contradicted = tuple(int(i) for i in ids[now != said])
    confusion = {"yes_said_yes": 0, "yes_said_no": 0, "no_said_yes": 0, "no_said_no": 0}
    agreement = None
    if len(ids) >= MIN_ANSWERS:
        p, y = held_out_probabilities(session, cell_type, state.steps or 1)
        held = p >= threshold
        confusion = {
            "yes_said_yes": int(np.sum(y & held)),
            "yes_said_no": int(np.sum(y & ~held)),
            "no_said_yes": int(np.sum(~y & held)),
            "no_said_no": int(np.sum(~y & ~held)),
        }
        agreement = float(np.mean(held == y))
    return AnswerQuality(cell_type, len(ids), threshold, agreement, confusion, contradicted)
