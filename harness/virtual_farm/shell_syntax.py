"""Lexer and parser of the virtual device's shell language (a mksh subset).

Supported: words with '..', ".." and backslash quoting; $NAME, ${NAME}, $?,
$$, $#, $@, $*, $0..$9 and $(..)/`..` substitution; globs (expanded later,
against the sandbox); `;`, newlines, `&&`, `||`, `|`, `!`; redirections
N>, N>>, N<, N>&M, N<&M; NAME=value prefixes; `for`, `if/elif/else`,
`while`, `until`, `{ ..; }` and `( .. )`. `case`, functions and `&` are
refused with a syntax error rather than guessed at.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class ShellSyntaxError(Exception):
    """Text the shell prints after '/system/bin/sh: '."""


class PartKind(str, Enum):
    LITERAL = "literal"
    VARIABLE = "variable"
    COMMAND = "command"  # $(..) or `..`


@dataclass(frozen=True)
class Part:
    kind: PartKind
    text: str  # literal text, variable name, or command source
    quoted: bool


@dataclass(frozen=True)
class Word:
    parts: tuple[Part, ...]

    def plain(self) -> str | None:
        """The word's text when it is all literal, else None."""
        if all(p.kind is PartKind.LITERAL for p in self.parts):
            return "".join(p.text for p in self.parts)
        return None


@dataclass(frozen=True)
class Redirect:
    fd: int
    op: str  # '>', '>>', '<', '>&', '<&'
    target: Word


@dataclass(frozen=True)
class SimpleCommand:
    assignments: tuple[tuple[str, Word], ...]
    words: tuple[Word, ...]
    redirects: tuple[Redirect, ...]


@dataclass(frozen=True)
class Pipeline:
    commands: tuple[SimpleCommand | CompoundCommand, ...]
    negated: bool


@dataclass(frozen=True)
class AndOr:
    first: Pipeline
    rest: tuple[tuple[str, Pipeline], ...]  # ('&&' | '||', pipeline)


Script = tuple[AndOr, ...]


@dataclass(frozen=True)
class ForLoop:
    name: str
    items: tuple[Word, ...] | None  # None: the positional parameters
    body: Script


@dataclass(frozen=True)
class IfClause:
    branches: tuple[tuple[Script, Script], ...]  # (condition, body) for if and each elif
    otherwise: Script | None


@dataclass(frozen=True)
class Loop:
    condition: Script
    body: Script
    until: bool


@dataclass(frozen=True)
class Group:
    body: Script
    subshell: bool  # ( .. ) runs in a copy of the shell; { ..; } in the shell itself


@dataclass(frozen=True)
class CompoundCommand:
    body: ForLoop | IfClause | Loop | Group
    redirects: tuple[Redirect, ...]


OPERATORS = ("&&", "||", ">>", ">&", "<&", "|", "&", ";", "<", ">", "(", ")")
REDIRECT_OPS = (">", ">>", "<", ">&", "<&")
UNSUPPORTED_WORDS = {"case", "esac", "function", "select"}
CLOSING_WORDS = {"then", "else", "elif", "fi", "do", "done", "}"}
SPECIAL_VARS = set("?$#@*!0123456789")


@dataclass(frozen=True)
class _Token:
    op: str | None = None  # operator or '\n'
    word: Word | None = None
    io_fd: int | None = None  # for a redirect operator with an explicit fd


def _is_name(s: str) -> bool:
    return bool(s) and (s[0].isalpha() or s[0] == "_") and all(c.isalnum() or c == "_" for c in s)


class _Lexer:
    def __init__(self, src: str) -> None:
        self.src = src
        self.i = 0
        self.tokens: list[_Token] = []
        self.parts: list[Part] = []
        self.in_word = False

    def add(self, kind: PartKind, text: str, quoted: bool) -> None:
        self.in_word = True
        last = self.parts[-1] if self.parts else None
        if kind is PartKind.LITERAL and last and last.kind is PartKind.LITERAL and last.quoted == quoted:
            self.parts[-1] = Part(kind, last.text + text, quoted)
        elif kind is not PartKind.LITERAL or text or quoted:
            self.parts.append(Part(kind, text, quoted))

    def flush(self) -> None:
        if self.in_word:
            self.tokens.append(_Token(word=Word(tuple(self.parts))))
        self.parts = []
        self.in_word = False

    def run(self) -> list[_Token]:
        src = self.src
        while self.i < len(src):
            c = src[self.i]
            if c in " \t\r":
                self.flush()
                self.i += 1
            elif c == "\n":
                self.flush()
                self.tokens.append(_Token(op="\n"))
                self.i += 1
            elif c == "#" and not self.in_word:
                while self.i < len(src) and src[self.i] != "\n":
                    self.i += 1
            elif c == "\\":
                if self.i + 1 < len(src):
                    if src[self.i + 1] != "\n":
                        self.add(PartKind.LITERAL, src[self.i + 1], True)
                    self.i += 2
                else:
                    self.add(PartKind.LITERAL, "\\", False)
                    self.i += 1
            elif c == "'":
                end = src.find("'", self.i + 1)
                if end < 0:
                    raise ShellSyntaxError("no closing quote")
                self.add(PartKind.LITERAL, src[self.i + 1 : end], True)
                self.i = end + 1
            elif c == '"':
                self.double_quoted()
            elif c == "$":
                self.dollar(quoted=False)
            elif c == "`":
                self.backtick(quoted=False)
            elif c in "|&;<>()":
                self.operator()
            else:
                start = self.i
                while self.i < len(src) and src[self.i] not in " \t\r\n#\\'\"$`|&;<>()":
                    self.i += 1
                if self.i == start:  # a '#' inside a word is literal
                    self.i += 1
                self.add(PartKind.LITERAL, src[start : self.i], False)
        self.flush()
        return self.tokens

    def operator(self) -> None:
        src = self.src
        op = next(o for o in OPERATORS if src.startswith(o, self.i))
        io_fd = None
        # "2>" : a word of digits glued to a redirection is the fd, not an argument.
        glued_fd = len(self.parts) == 1 and not self.parts[0].quoted and self.parts[0].text.isdigit()
        if op in REDIRECT_OPS and self.in_word and glued_fd:
            io_fd = int(self.parts[0].text)
            self.parts = []
            self.in_word = False
        self.flush()
        self.tokens.append(_Token(op=op, io_fd=io_fd))
        self.i += len(op)

    def double_quoted(self) -> None:
        src = self.src
        self.i += 1
        self.add(PartKind.LITERAL, "", True)
        while True:
            if self.i >= len(src):
                raise ShellSyntaxError("no closing quote")
            c = src[self.i]
            if c == '"':
                self.i += 1
                return
            if c == "\\" and self.i + 1 < len(src) and src[self.i + 1] in '$`"\\\n':
                if src[self.i + 1] != "\n":
                    self.add(PartKind.LITERAL, src[self.i + 1], True)
                self.i += 2
            elif c == "$":
                self.dollar(quoted=True)
            elif c == "`":
                self.backtick(quoted=True)
            else:
                self.add(PartKind.LITERAL, c, True)
                self.i += 1

    def dollar(self, quoted: bool) -> None:
        src = self.src
        nxt = src[self.i + 1] if self.i + 1 < len(src) else ""
        if nxt == "{":
            end = src.find("}", self.i + 2)
            name = src[self.i + 2 : end] if end >= 0 else ""
            if end < 0 or not (_is_name(name) or name in SPECIAL_VARS):
                raise ShellSyntaxError(f"{src[self.i : end + 1 if end >= 0 else None]}: bad substitution")
            self.add(PartKind.VARIABLE, name, quoted)
            self.i = end + 1
        elif nxt == "(":
            if src.startswith("((", self.i + 1):
                raise ShellSyntaxError("arithmetic expansion $((..)) is not supported by the virtual device shell")
            end = _matching_paren(src, self.i + 2)
            self.add(PartKind.COMMAND, src[self.i + 2 : end], quoted)
            self.i = end + 1
        elif nxt and nxt in SPECIAL_VARS:
            self.add(PartKind.VARIABLE, nxt, quoted)
            self.i += 2
        elif nxt and (nxt.isalpha() or nxt == "_"):
            j = self.i + 1
            while j < len(src) and (src[j].isalnum() or src[j] == "_"):
                j += 1
            self.add(PartKind.VARIABLE, src[self.i + 1 : j], quoted)
            self.i = j
        else:
            self.add(PartKind.LITERAL, "$", quoted)
            self.i += 1

    def backtick(self, quoted: bool) -> None:
        src = self.src
        j = self.i + 1
        body = []
        while j < len(src) and src[j] != "`":
            if src[j] == "\\" and j + 1 < len(src) and src[j + 1] in "`\\$":
                j += 1
            body.append(src[j])
            j += 1
        if j >= len(src):
            raise ShellSyntaxError("no closing quote")
        self.add(PartKind.COMMAND, "".join(body), quoted)
        self.i = j + 1


def _matching_paren(src: str, start: int) -> int:
    depth = 1
    i = start
    while i < len(src):
        c = src[i]
        if c == "\\":
            i += 2
            continue
        if c == "'":
            end = src.find("'", i + 1)
            if end < 0:
                break
            i = end + 1
            continue
        if c == '"':
            i += 1
            while i < len(src) and src[i] != '"':
                i += 2 if src[i] == "\\" else 1
            i += 1
            continue
        if c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    raise ShellSyntaxError("no closing ')' in $(..)")


class _Parser:
    def __init__(self, tokens: list[_Token]) -> None:
        self.tokens = tokens
        self.i = 0

    def peek(self) -> _Token | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def peek_op(self) -> str | None:
        t = self.peek()
        return t.op if t else None

    def skip_newlines(self) -> None:
        while self.peek_op() == "\n":
            self.i += 1

    def unexpected(self, t: _Token | None) -> ShellSyntaxError:
        if t is None:
            return ShellSyntaxError("syntax error: unexpected end of input")
        shown = "newline" if t.op == "\n" else t.op or (t.word and t.word.plain()) or "word"
        return ShellSyntaxError(f"syntax error: '{shown}' unexpected")

    def reserved(self) -> str | None:
        """The reserved word at the current token, if it is one (unquoted, plain)."""
        t = self.peek()
        if t is None or t.word is None or t.word.parts[:1] and t.word.parts[0].quoted:
            return None
        plain = t.word.plain()
        return plain if plain in CLOSING_WORDS | {"for", "if", "while", "until", "{", "in"} else None

    def expect(self, word: str) -> None:
        if self.reserved() != word:
            raise self.unexpected(self.peek())
        self.i += 1

    def script(self) -> Script:
        items = self.compound_list()
        if self.peek() is not None:
            raise self.unexpected(self.peek())
        return items

    def compound_list(self) -> Script:
        """and-or lists separated by ';' or newlines, up to a closing word, ')' or the end."""
        items: list[AndOr] = []
        while True:
            while self.peek_op() in (";", "\n"):
                self.i += 1
            t = self.peek()
            if t is None or t.op == ")" or self.reserved() in CLOSING_WORDS:
                return tuple(items)
            items.append(self.and_or())
            t = self.peek()
            if t is None or t.op == ")" or self.reserved() in CLOSING_WORDS:
                return tuple(items)
            if t.op == "&":
                raise ShellSyntaxError("background jobs ('&') are not supported by the virtual device shell")
            if t.op not in (";", "\n"):
                raise self.unexpected(t)

    def and_or(self) -> AndOr:
        first = self.pipeline()
        rest: list[tuple[str, Pipeline]] = []
        while (op := self.peek_op()) in ("&&", "||"):
            self.i += 1
            self.skip_newlines()
            rest.append((op, self.pipeline()))
        return AndOr(first, tuple(rest))

    def pipeline(self) -> Pipeline:
        negated = False
        t = self.peek()
        if t and t.word and t.word.plain() == "!" and t.word.parts[0].quoted is False:
            negated = True
            self.i += 1
        commands = [self.command()]
        while self.peek_op() == "|":
            self.i += 1
            self.skip_newlines()
            commands.append(self.command())
        return Pipeline(tuple(commands), negated)

    def command(self) -> SimpleCommand | CompoundCommand:
        word = self.reserved()
        if self.peek_op() == "(":
            self.i += 1
            body: ForLoop | IfClause | Loop | Group = Group(self.body_until(")"), subshell=True)
        elif word == "{":
            self.i += 1
            body = Group(self.body_until("}"), subshell=False)
        elif word == "for":
            body = self.for_loop()
        elif word == "if":
            body = self.if_clause()
        elif word in ("while", "until"):
            self.i += 1
            condition = self.body_until("do")
            body = Loop(condition, self.body_until("done"), until=word == "until")
        elif word is not None and word != "in":
            raise self.unexpected(self.peek())
        else:
            return self.simple_command()
        return CompoundCommand(body, self.redirects())

    def body_until(self, closing: str) -> Script:
        body = self.compound_list()
        if closing == ")":
            if self.peek_op() != ")":
                raise self.unexpected(self.peek())
            self.i += 1
        else:
            self.expect(closing)
        if not body:
            raise ShellSyntaxError(f"syntax error: '{closing}' unexpected")
        return body

    def for_loop(self) -> ForLoop:
        self.i += 1
        t = self.peek()
        name = t.word.plain() if t is not None and t.word is not None else None
        if name is None or not _is_name(name):
            raise self.unexpected(t)
        self.i += 1
        self.skip_newlines()
        items: tuple[Word, ...] | None = None
        if self.reserved() == "in":
            self.i += 1
            words = []
            while (t := self.peek()) is not None and t.word is not None:
                words.append(t.word)
                self.i += 1
            items = tuple(words)
        while self.peek_op() in (";", "\n"):
            self.i += 1
        self.expect("do")
        return ForLoop(name, items, self.body_until("done"))

    def if_clause(self) -> IfClause:
        self.i += 1
        branches = [(self.body_until("then"), self.compound_list())]
        otherwise = None
        while True:
            word = self.reserved()
            self.i += 1
            if word == "elif":
                branches.append((self.body_until("then"), self.compound_list()))
            elif word == "else":
                otherwise = self.compound_list()
            elif word == "fi":
                break
            else:
                raise self.unexpected(self.tokens[self.i - 1] if self.i <= len(self.tokens) else None)
        if any(not body for _, body in branches) or otherwise == ():
            raise ShellSyntaxError("syntax error: empty 'then' or 'else' part")
        return IfClause(tuple(branches), otherwise)

    def redirects(self) -> tuple[Redirect, ...]:
        out = []
        while (t := self.peek()) is not None and t.op in REDIRECT_OPS:
            out.append(self.redirect())
        return tuple(out)

    def redirect(self) -> Redirect:
        t = self.tokens[self.i]
        self.i += 1
        target = self.peek()
        if target is None or target.word is None:
            raise self.unexpected(target)
        self.i += 1
        default_fd = 0 if t.op in ("<", "<&") else 1
        return Redirect(t.io_fd if t.io_fd is not None else default_fd, t.op or "", target.word)

    def simple_command(self) -> SimpleCommand:
        assignments: list[tuple[str, Word]] = []
        words: list[Word] = []
        redirects: list[Redirect] = []
        while True:
            t = self.peek()
            if t is None:
                break
            if t.op in REDIRECT_OPS:
                redirects.append(self.redirect())
                continue
            if t.op is not None:
                if t.op == "(":
                    raise ShellSyntaxError("syntax error: '(' unexpected")
                break
            word = t.word
            assert word is not None
            if not words:
                assignment = _assignment(word)
                if assignment is not None:
                    self.i += 1
                    assignments.append(assignment)
                    continue
                plain = word.plain()
                if plain in UNSUPPORTED_WORDS and not word.parts[0].quoted:
                    raise ShellSyntaxError(f"syntax error: '{plain}' is not supported by the virtual device shell")
            self.i += 1
            words.append(word)
        if not (assignments or words or redirects):
            raise self.unexpected(self.peek())
        return SimpleCommand(tuple(assignments), tuple(words), tuple(redirects))


def _assignment(word: Word) -> tuple[str, Word] | None:
    first = word.parts[0] if word.parts else None
    if first is None or first.kind is not PartKind.LITERAL or first.quoted or "=" not in first.text:
        return None
    name, value = first.text.split("=", 1)
    if not _is_name(name):
        return None
    rest = ((Part(PartKind.LITERAL, value, False),) if value else ()) + word.parts[1:]
    return name, Word(rest)


def parse(src: str) -> Script:
    return _Parser(_Lexer(src).run()).script()
