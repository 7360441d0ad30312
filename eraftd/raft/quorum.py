"""Pure majority maths: the commit index a quorum has reached, and vote results."""
from __future__ import annotations

from enum import Enum
from typing import Iterable, Mapping


class VoteResult(Enum):
    PENDING = 0
    WON = 1
    LOST = 2


def majority(n: int) -> int:
    return n // 2 + 1


def committed_index(matches: Iterable[int]) -> int:
    """The largest index that a majority of voters have (matches: one per voter)."""
    srt = sorted(matches, reverse=True)
    if not srt:
        return 0
    return srt[majority(len(srt)) - 1]


def vote_result(voters: Iterable[int], votes: Mapping[int, bool]) -> VoteResult:
    voters = list(voters)
    granted = rejected = 0
    for v in voters:
        got = votes.get(v)
        if got is True:
            granted += 1
        elif got is False:
            rejected += 1
    q = majority(len(voters))
    if granted >= q:
        return VoteResult.WON
    if len(voters) - rejected < q:  # even every missing vote would not be enough
        return VoteResult.LOST
    return VoteResult.PENDING
