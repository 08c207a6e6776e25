"""Where each key of a TOML document is defined: tomllib returns values without positions.

`key_lines` follows the structure of a document tomllib has already accepted (TOML 1.0) and maps
every key path to the line that defines it: table headers, arrays of tables (each element by its
index), dotted keys, inline tables and array elements. Strings are skipped by their own rules, so
a `=` or `[` inside a (multi-line) string is never taken for structure.

A path is a tuple of keys and array indices, as `format_path` renders it:
("peers", "gw", "proposals", 0, "esp") is peers.gw.proposals[0].esp.
"""

import re
import string

KeyPath = tuple[str | int, ...]

_BARE = frozenset(string.ascii_letters + string.digits + "_-")  # TOML 1.0 bare keys
_ESCAPES = {"b": "\b", "t": "\t", "n": "\n", "f": "\f", "r": "\r", '"': '"', "\\": "\\"}
_UNICODE_ESCAPES = {"u": 4, "U": 8}
_SCALAR_END = frozenset(",]}#\r\n")  # numbers, booleans and dates end at one of these
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def key_lines(text: str) -> dict[KeyPath, int]:
    """The 1-based line defining each key path of `text`, which must be valid TOML.

    A table created implicitly (by a header or dotted key below it) gets the line of its first
    mention; an array of tables gets the line of its first element. ValueError if `text` is not
    TOML the scanner can follow (only possible for text tomllib rejects).
    """
    return _Scanner(text).scan()


def line_of(lines: dict[KeyPath, int], path: KeyPath) -> int | None:
    """The line of `path`, else of its nearest ancestor that has one (where a missing key
    belongs); None if no part of it is in the document."""
    for end in range(len(path), 0, -1):
        line = lines.get(path[:end])
        if line is not None:
            return line
    return None


def format_path(path: KeyPath) -> str:
    """peers.gw.proposals[0].esp; keys that are not bare are quoted as TOML would."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
            continue
        key = part if _BARE_KEY.fullmatch(part) else _quote(part)
        out += f".{key}" if out else key
    return out


def _quote(key: str) -> str:
    escaped = key.replace("\\", "\\\\").replace('"', '\\"')
    return '"' + "".join(c if c.isprintable() else f"\\u{ord(c):04x}" for c in escaped) + '"'


class _Scanner:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.line = 1
        self.lines: dict[KeyPath, int] = {}
        self.table: KeyPath = ()
        # Each array of tables (by its full path) -> index of its last element so far: a header
        # below it ([a.b] after [[a]]) belongs to that element.
        self.arrays: dict[KeyPath, int] = {}

    def scan(self) -> dict[KeyPath, int]:
        while True:
            self.skip_blank()
            if self.pos >= len(self.text):
                return self.lines
            if self.text.startswith("[[", self.pos):
                self.array_header()
            elif self.text.startswith("[", self.pos):
                self.table_header()
            else:
                self.key_value(self.table)

    # ----------------------------------------------------------------------- characters

    def peek(self) -> str:
        return self.text[self.pos : self.pos + 1]

    def advance(self, count: int = 1) -> None:
        self.line += self.text.count("\n", self.pos, self.pos + count)
        self.pos += count

    def expect(self, token: str) -> None:
        if not self.text.startswith(token, self.pos):
            raise ValueError(f"line {self.line}: expected {token!r}")
        self.advance(len(token))

    def skip_space(self) -> None:
        while self.peek() in (" ", "\t"):
            self.pos += 1

    def skip_blank(self) -> None:
        """Whitespace, newlines and comments."""
        while self.pos < len(self.text):
            char = self.text[self.pos]
            if char in " \t\r\n":
                self.advance()
            elif char == "#":
                end = self.text.find("\n", self.pos)
                self.pos = len(self.text) if end < 0 else end
            else:
                return

    # -------------------------------------------------------------------------- structure

    def note(self, path: KeyPath, line: int) -> None:
        for end in range(1, len(path) + 1):
            self.lines.setdefault(path[:end], line)

    def resolve(self, keys: list[str]) -> KeyPath:
        """The full path of a header's keys, through the last element of each array of tables."""
        path: KeyPath = ()
        for key in keys:
            path += (key,)
            if path in self.arrays:
                path += (self.arrays[path],)
        return path

    def table_header(self) -> None:
        line = self.line
        self.expect("[")
        self.skip_space()
        self.table = self.resolve(self.keys())
        self.skip_space()
        self.expect("]")
        self.note(self.table, line)

    def array_header(self) -> None:
        line = self.line
        self.expect("[[")
        self.skip_space()
        keys = self.keys()
        self.skip_space()
        self.expect("]]")
        array = (*self.resolve(keys[:-1]), keys[-1])
        index = self.arrays.get(array, -1) + 1
        self.arrays[array] = index
        self.table = (*array, index)
        self.note(self.table, line)

    def key_value(self, prefix: KeyPath) -> None:
        line = self.line
        path = prefix + tuple(self.keys())
        self.skip_space()
        self.expect("=")
        self.skip_space()
        self.note(path, line)
        self.value(path)

    def keys(self) -> list[str]:
        """A dotted key: simple keys separated by dots, with optional whitespace around them."""
        keys = [self.key()]
        while True:
            self.skip_space()
            if self.peek() != ".":
                return keys
            self.advance()
            self.skip_space()
            keys.append(self.key())

    def key(self) -> str:
        char = self.peek()
        if char == '"':
            return self.basic_string()
        if char == "'":
            return self.literal_string()
        start = self.pos
        while self.peek() in _BARE:
            self.pos += 1
        if self.pos == start:
            raise ValueError(f"line {self.line}: expected a key")
        return self.text[start : self.pos]

    # ------------------------------------------------------------------------------ values

    def value(self, path: KeyPath) -> None:
        char = self.peek()
        if char == '"':
            if self.text.startswith('"""', self.pos):
                self.multiline_string('"""')
            else:
                self.basic_string()
        elif char == "'":
            if self.text.startswith("'''", self.pos):
                self.multiline_string("'''")
            else:
                self.literal_string()
        elif char == "[":
            self.array(path)
        elif char == "{":
            self.inline_table(path)
        else:
            start = self.pos
            while self.pos < len(self.text) and self.text[self.pos] not in _SCALAR_END:
                self.pos += 1
            if self.pos == start:
                raise ValueError(f"line {self.line}: expected a value")

    def array(self, path: KeyPath) -> None:
        self.expect("[")
        index = 0
        while True:
            self.skip_blank()
            if self.peek() == "]":
                self.advance()
                return
            self.note((*path, index), self.line)
            self.value((*path, index))
            index += 1
            self.skip_blank()
            if self.peek() == ",":
                self.advance()

    def inline_table(self, path: KeyPath) -> None:
        self.expect("{")
        while True:
            self.skip_blank()
            if self.peek() == "}":
                self.advance()
                return
            self.key_value(path)
            self.skip_blank()
            if self.peek() == ",":
                self.advance()

    def basic_string(self) -> str:
        self.expect('"')
        out: list[str] = []
        while True:
            char = self.peek()
            if char == "":
                raise ValueError(f"line {self.line}: unterminated string")
            self.advance()
            if char == '"':
                return "".join(out)
            if char != "\\":
                out.append(char)
                continue
            escape = self.peek()
            self.advance()
            if escape in _ESCAPES:
                out.append(_ESCAPES[escape])
            elif escape in _UNICODE_ESCAPES:
                width = _UNICODE_ESCAPES[escape]
                out.append(chr(int(self.text[self.pos : self.pos + width], 16)))
                self.advance(width)
            else:
                raise ValueError(f"line {self.line}: bad escape \\{escape}")

    def literal_string(self) -> str:
        self.expect("'")
        end = self.text.find("'", self.pos)
        if end < 0:
            raise ValueError(f"line {self.line}: unterminated string")
        key = self.text[self.pos : end]
        self.advance(end + 1 - self.pos)
        return key

    def multiline_string(self, quotes: str) -> None:
        """Skip a multi-line string. Up to two quotes may sit right before the closing three
        (TOML 1.0), so the string ends after the last quote of that run."""
        self.advance(3)
        while self.pos < len(self.text):
            char = self.text[self.pos]
            if char == "\\" and quotes == '"""':
                self.advance(2)  # an escaped character (or line-ending backslash + newline)
            elif self.text.startswith(quotes, self.pos):
                run = 3
                while run < 5 and self.text.startswith(quotes[0], self.pos + run):
                    run += 1
                self.advance(run)
                return
            else:
                self.advance()
        raise ValueError(f"line {self.line}: unterminated string")
