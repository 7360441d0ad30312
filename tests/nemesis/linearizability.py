"""A linearizability checker for the key-value model (put sets, append concatenates, get reads,
delete makes the key missing, cas sets the value if it is the expected one; a missing key
reads as "" -- the workload never writes an empty value, so "" is the missing state), key by
key (linearizability is local).

Wing & Gong's search with Lowe's memoisation: depth-first over the operations that may go next
(those called before every pending operation returned), remembering every (linearized set,
state) already explored.  An operation whose outcome is unknown may take effect at any time
after its call, or never: it never constrains which operations may go next and need not be
linearized (an unknown cas takes effect only where it would swap; elsewhere taking effect is
the same as never).  Reductions keep it tractable, all exact:
  - a get whose result matches the state and that may go next is taken at once (moving a read
    that is enabled and matches earlier never breaks a linearization);
  - an unknown write whose (unique) value appears in no read (no get, no cas's expected value
    or found value) is dropped: had it taken effect, every op that looks at the state before
    the next reset would show it -- except a delete that found the key, which only needs the
    key to exist; so on a key with an acknowledged delete that found its key, nothing is
    dropped;
  - the prefix rule: while no reset (put, delete, cas) can be ordered first, the state must be
    a prefix of the value the next read returned (appends only extend a value).
The linearized set is kept as (lo, rest): every op below lo is linearized, rest is a bitmask of
the ops from lo on, so the memo stays small on long histories.  The search is bounded
(max_states); a key it cannot decide within the bound is reported as undecided."""
from __future__ import annotations

import dataclasses
import math
from typing import Iterable

from .history import CAS, DELETE, GET, PUT, Op

RESETS = (PUT, DELETE, CAS)          # ops that may replace the value, not only extend it


@dataclasses.dataclass
class KeyResult:
    key: str
    ok: bool
    decided: bool
    ops: int
    states: int
    detail: str = ""


def _prepare(ops: Iterable[Op]) -> list[Op]:
    ops = [o for o in ops if not (o.kind == GET and o.unknown)]
    reads = [o.result or "" for o in ops if o.kind == GET or (o.kind == CAS and o.ok and not o.hit)]
    reads += [o.expected for o in ops if o.kind == CAS and o.expected]
    may_drop = not any(o.kind == DELETE and o.ok and o.hit for o in ops)
    kept = []
    for o in ops:
        if (may_drop and o.unknown and o.kind != DELETE and o.value
                and not any(o.value in r for r in reads)):
            continue
        kept.append(o)
    kept.sort(key=lambda o: (o.call, o.id))
    return kept


def _step(o: Op, state: str) -> str | None:
    """The state after o, or None when o cannot take effect (as it did) in this state."""
    kind = o.kind
    if kind == GET:
        return state if (o.result or "") == state else None
    if kind == PUT:
        return o.value
    if kind == DELETE:
        if o.unknown:
            return ""
        return ("" if state else None) if o.hit else (state if not state else None)
    if kind == CAS:
        if state == (o.expected or ""):
            return o.value if o.unknown or o.hit else None
        if o.unknown or o.hit:
            return None
        return state if (o.result or "") == state else None
    return state + o.value                          # append


def check_key(key: str, ops: Iterable[Op], max_states: int = 2_000_000) -> KeyResult:
    ops = _prepare(ops)
    n = len(ops)
    calls = [o.call for o in ops]
    rets = [o.ret if not o.unknown else math.inf for o in ops]
    required = sum(1 for o in ops if not o.unknown)

    def candidates(lo: int, rest: int, state: str) -> list[int]:
        out: list[int] = []
        m = math.inf
        i = lo
        while i < n:
            if not (rest >> (i - lo)) & 1:
                if calls[i] >= m:
                    break
                o = ops[i]
                if o.kind == GET and (o.result or "") == state:
                    return [i]                      # an enabled matching read: take it now
                out.append(i)
                if rets[i] < m:
                    m = rets[i]
            i += 1
        # tried last-first: put the earliest-returning (most likely) last; unknowns first
        out.sort(key=lambda j: -rets[j])
        return out

    # the prefix rule: appends only extend the value, so while no reset can come first, the
    # state must be a prefix of what the next read (the remaining get returning first) saw
    gets_by_ret = sorted((i for i, o in enumerate(ops) if o.kind == GET), key=lambda i: rets[i])
    puts_by_call = [i for i, o in enumerate(ops) if o.kind in RESETS]

    def linearized(i: int, lo: int, rest: int) -> bool:
        return i < lo or bool((rest >> (i - lo)) & 1)

    def advance(seq: list[int], p: int, lo: int, rest: int) -> int:
        while p < len(seq) and linearized(seq[p], lo, rest):
            p += 1
        return p

    def viable(state: str, lo: int, rest: int, gp: int, pp: int) -> bool:
        """False when the next read can no longer be reached from state."""
        j = gp
        put_call = math.inf
        k = pp
        while k < len(puts_by_call):
            if not linearized(puts_by_call[k], lo, rest):
                put_call = calls[puts_by_call[k]]
                break
            k += 1
        while j < len(gets_by_ret):
            g = gets_by_ret[j]
            if not linearized(g, lo, rest):
                if rets[g] >= put_call:
                    return True
                if not (ops[g].result or "").startswith(state):
                    return False
                return True
            j += 1
        return True

    seen: set[tuple[int, int, int]] = set()
    stack = [(0, 0, "", 0, candidates(0, 0, ""), 0, 0)]
    best = (0, 0, "")
    while stack:
        lo, rest, state, done, cands, gp, pp = stack[-1]
        if done == required:
            return KeyResult(key, True, True, n, len(seen))
        if done > best[0]:
            best = (done, lo, state)
        if not cands:
            stack.pop()
            continue
        i = cands.pop()
        o = ops[i]
        ns = _step(o, state)
        if ns is None:
            continue
        r = rest | (1 << (i - lo))
        t = (~r & (r + 1)).bit_length() - 1          # trailing ones: advance lo past them
        nlo, nrest = lo + t, r >> t
        memo = (nlo, nrest, hash(ns))
        if memo in seen:
            continue
        seen.add(memo)
        if len(seen) > max_states:
            return KeyResult(key, False, False, n, len(seen),
                             f"undecided after {max_states} states")
        ngp = advance(gets_by_ret, gp, nlo, nrest)
        npp = advance(puts_by_call, pp, nlo, nrest)
        if o.kind != GET and not viable(ns, nlo, nrest, ngp, npp):
            continue
        stack.append((nlo, nrest, ns, done + (0 if o.unknown else 1),
                      candidates(nlo, nrest, ns), ngp, npp))
    done, lo, state = best
    around = "\n".join(f"  {o}" for o in ops[max(0, lo - 3):lo + 8])
    return KeyResult(key, False, True, n, len(seen),
                     f"not linearizable: at most {done} of {required} acknowledged ops placed; "
                     f"stuck near op {lo} with state {state[-200:]!r}:\n{around}")


def check(history_by_key: dict[str, list[Op]], max_states: int = 2_000_000) -> list[KeyResult]:
    return [check_key(k, ops, max_states) for k, ops in sorted(history_by_key.items())]


def duplicates(value: str, tokens: Iterable[str]) -> list[str]:
    """Tokens that occur more than once in value."""
    return [t for t in tokens if value.count(t) > 1]
