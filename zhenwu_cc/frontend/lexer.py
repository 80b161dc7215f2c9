"""lark's contextual lexer for the zk grammar, with one regex for all the parser states.

lark's contextual lexer gives each LALR state a scanner of its own: one regex, the alternation of
the terminals that state accepts. Compiling those regexes was most of the first parse at start-up
(41 compiles on gemm.zk, about 34M instructions), on every `check`. But lark sorts every state's
terminals by one key, so each state's alternation is a subsequence of one global order, and
Python's `re` returns the first alternative that matches. One regex of all the terminals,
compiled once, finds the first terminal T in that order that matches here: when the state
accepts T, that is what the state's own scanner finds; when it does not (`tile` used as a name,
an integer where SIGNED_INT comes before INT), the answer is the first terminal after T that the
state accepts and that matches, each tried alone (a regex compiled on first need). The rest is
lark's `BasicLexer.next_token` and `ContextualLexer.lex` step for step: ignored terminals, a
regex terminal's match turned into the string terminal it spells (`-` as MINUS), and errors (an
UnexpectedCharacters, or an UnexpectedToken when a terminal the state does not accept
matches). tests/test_lexer.py holds it to lark's own lexer: every state's terminals, and
tokens, trees and errors on a corpus.

lark builds it through its `_plugins` hook (the one lark-cython uses); gen_tables.py records what
it needs of the terminals (their order, newlines, string terminals) from lark's own root lexer.
"""

from __future__ import annotations

import re

from lark.exceptions import UnexpectedCharacters, UnexpectedToken
from lark.lexer import Lexer, Token

from zhenwu_cc.frontend._tables import LEXER


_RANK = {name: i for i, name in enumerate(LEXER["order"])}
_TERMINALS = frozenset(LEXER["order"])


class _State:
    """What one parser state's own scanner would be: the terminals it tries (`terms`), what it
    names when none matches (`allowed`), for a regex terminal the strings its match may spell
    (`unless`, text -> terminal), and the terminals it tries after one it does not (`after`)."""

    __slots__ = ("terms", "allowed", "unless", "after")

    def __init__(self, accepts, ignore: frozenset[str], strings: dict[str, str]):
        accepts = set(accepts) & _TERMINALS  # not $END or rule names
        self.unless: dict[str, dict[str, str]] = {}
        for name, spelled in LEXER["unless"].items():
            spelled = [s for s in spelled if s in accepts] if name in accepts else None
            if spelled:
                self.unless[name] = {strings[s]: s for s in spelled}
                accepts.difference_update(spelled)
        self.terms = frozenset(accepts)
        self.allowed = (self.terms - ignore) or {"<END-OF-FILE>"}
        # a terminal it does not try -> (terminal, its text if a plain string) it tries later
        self.after: dict[str, list[tuple[str, str | None]]] = {}


class ZkLexer(Lexer):
    """The contextual lexer (`lark.lexer.ContextualLexer`'s constructor and results)."""

    def __init__(self, conf, states, always_accept=()):
        if conf.callbacks or conf.use_bytes or conf.postlex or conf.re_module is not re:
            raise ValueError("ZkLexer supports neither lexer callbacks, bytes, a postlexer nor "
                             "the regex module")
        self.terminals_by_name = conf.terminals_by_name
        self._flags = conf.g_regex_flags
        self._states = states  # parser state -> the terminals it accepts
        self._extra = frozenset(conf.ignore) | frozenset(always_accept)
        self._ignore = frozenset(conf.ignore)
        self._newline = frozenset(LEXER["newline"])
        self._by_state: dict[int, _State] = {}
        self._by_accepts: dict[frozenset[str], _State] = {}
        self._alone: dict[str, re.Pattern] = {}
        self._names: list[str | None] = [None]  # group number in `_regex` -> terminal
        self._strings = {s: conf.terminals_by_name[s].pattern.value
                         for spelled in LEXER["unless"].values() for s in spelled}
        self._root = _State(_TERMINALS, self._ignore, self._strings)
        self._regex = self._alternation()

    def _state(self, position: int) -> _State:
        accepts = self._states[position]
        key = frozenset(accepts)
        state = self._by_accepts.get(key)
        if state is None:
            state = self._by_accepts[key] = _State(key | self._extra, self._ignore, self._strings)
        self._by_state[position] = state
        return state

    def _later(self, state: _State, first: str, text: str, pos: int, end: int):
        """(text, terminal) of the first terminal after `first` that `state` tries and that
        matches at `pos`, or None; each tried alone (an integer where only INT is accepted,
        since SIGNED_INT comes first, is the common case): a string compared, a regex compiled
        on first need (compiling an alternation of them for each state cost more)."""
        tries = state.after.get(first)
        if tries is None:
            tries = state.after[first] = [(name, self._string(name))
                                          for name in LEXER["order"][_RANK[first] + 1:]
                                          if name in state.terms]
        for name, string in tries:
            if string is not None:
                if text.startswith(string, pos, end):
                    return string, name
                continue
            alone = self._alone.get(name)
            if alone is None:
                pattern = self.terminals_by_name[name].pattern.to_regexp()
                alone = self._alone[name] = re.compile(pattern, self._flags)
            m = alone.match(text, pos, end)
            if m is not None:
                return m.group(0), name
        return None

    def _string(self, name: str) -> str | None:
        """The text of a string terminal that matches exactly its text, else None."""
        pattern = self.terminals_by_name[name].pattern
        return pattern.value if pattern.type == "str" and not pattern.flags else None

    def _alternation(self) -> re.Pattern:
        """One regex of all the terminals, tried in lark's order; `lastindex` is the number of
        the one that matched in `self._names`. Each terminal is followed by an empty group, not
        put in one: `re` skips an alternative whose first character cannot match only when the
        alternative starts with that character (a third faster); a terminal with a `|` gets a
        non-capturing group around it. Unnamed groups: named ones cost more to compile (9.6M
        instructions against 6.6M)."""
        alternatives = []
        for name, inner in zip(LEXER["order"], LEXER["groups"], strict=True):
            pattern = self.terminals_by_name[name].pattern.to_regexp()
            alternatives.append(f"(?:{pattern})()" if "|" in pattern else f"{pattern}()")
            self._names += [None] * inner + [name]
        return re.compile("|".join(alternatives), self._flags)

    def _next_token(self, state: _State, lexer_state, parser_state):
        """`BasicLexer.next_token`; None at the end of the text."""
        line_ctr, text = lexer_state.line_ctr, lexer_state.text
        source, end, match, names = text.text, text.end, self._regex.match, self._names
        while line_ctr.char_pos < end:
            pos = line_ctr.char_pos
            m = match(source, pos, end)
            name = names[m.lastindex] if m is not None else None
            if name in state.terms:
                value = m.group(0)
            else:
                found = m and self._later(state, name, source, pos, end)
                if not found:
                    last = lexer_state.last_token
                    raise UnexpectedCharacters(source, pos, line_ctr.line, line_ctr.column,
                                               allowed=set(state.allowed),
                                               token_history=last and [last], state=parser_state,
                                               terminals_by_name=self.terminals_by_name)
                value, name = found
            line, column = line_ctr.line, line_ctr.column
            line_ctr.feed(value, name in self._newline)
            if name in self._ignore:
                continue
            strings = state.unless.get(name)
            if strings:
                name = strings.get(value, name)
            token = Token(name, value, pos, line, column, line_ctr.line, line_ctr.column,
                          line_ctr.char_pos)
            lexer_state.last_token = token
            return token
        return None

    def lex(self, lexer_state, parser_state):
        by_state = self._by_state
        try:
            while True:
                position = parser_state.position
                state = by_state.get(position) or self._state(position)
                token = self._next_token(state, lexer_state, parser_state)
                if token is None:
                    return
                yield token
        except UnexpectedCharacters as e:
            # as lark's: a terminal this state does not accept makes an UnexpectedToken
            last_token = lexer_state.last_token
            try:
                token = self._next_token(self._root, lexer_state, parser_state)
                raise UnexpectedToken(token, e.allowed, state=parser_state,
                                      token_history=[last_token],
                                      terminals_by_name=self.terminals_by_name)
            except UnexpectedCharacters:
                raise e
