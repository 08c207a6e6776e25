"""Aligned text tables for kinkctl's human output: columns two spaces apart, numbers
right-aligned, no trailing blanks."""

from collections.abc import Collection, Sequence

GAP = "  "


def table(
    headers: Sequence[str], rows: Sequence[Sequence[str]], right: Collection[int] = ()
) -> list[str]:
    """The lines of a table: a header line, then one line per row. `right` holds the indexes
    of the columns to right-align (counts, sizes)."""
    return Table(headers, right).lines(rows)


class Table:
    """A table printed as its rows come (a paged answer: kink.daemon.control_protocol), in
    batches: each column as wide as its widest cell so far, so that a batch is aligned in
    itself and with the ones before unless it has a wider cell (a column widens, never
    narrows). The header comes with the first batch; one batch is `table`."""

    def __init__(self, headers: Sequence[str], right: Collection[int] = ()) -> None:
        self.headers = headers
        self.right = right
        self.widths = [len(h) for h in headers]
        self.started = False  # the header is out

    def lines(self, rows: Sequence[Sequence[str]]) -> list[str]:
        """The lines of the next rows (after the header, for the first rows)."""
        count = len(self.widths)
        for row in rows:
            if len(row) != count:
                raise ValueError(f"a row of {len(row)} cells under {count} headers")
        if rows:
            columns = zip(*rows, strict=True)
            self.widths = [max(w, *map(len, c)) for w, c in zip(self.widths, columns, strict=True)]
        # One format for the batch: a row is a call of C code, not a loop over its cells
        # (100,000 SAs in `kinkctl sas`).
        form = GAP.join(
            f"{{:{'>' if i in self.right else '<'}{w}}}" for i, w in enumerate(self.widths)
        ).format
        out = [] if self.started else [form(*self.headers).rstrip()]
        self.started = True
        out += (form(*row).rstrip() for row in rows)
        return out


def fields(pairs: Sequence[tuple[str, str]]) -> list[str]:
    """ "name   value" lines with the values aligned (a record, as `kinkctl status` shows)."""
    width = max((len(name) for name, _ in pairs), default=0)
    return [f"{name.ljust(width)}{GAP}{value}".rstrip() for name, value in pairs]
