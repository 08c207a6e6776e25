"""Aligned text tables for kinkctl's human output: columns two spaces apart, numbers
right-aligned, no trailing blanks."""

from collections.abc import Collection, Sequence

GAP = "  "


def table(
    headers: Sequence[str], rows: Sequence[Sequence[str]], right: Collection[int] = ()
) -> list[str]:
    """The lines of a table: a header line, then one line per row. `right` holds the indexes
    of the columns to right-align (counts, sizes)."""
    widths = [len(h) for h in headers]
    for row in rows:
        if len(row) != len(headers):
            raise ValueError(f"a row of {len(row)} cells under {len(headers)} headers")
        widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]

    def line(cells: Sequence[str]) -> str:
        padded = (
            cell.rjust(w) if i in right else cell.ljust(w)
            for i, (cell, w) in enumerate(zip(cells, widths, strict=True))
        )
        return GAP.join(padded).rstrip()

    return [line(headers), *(line(row) for row in rows)]


def fields(pairs: Sequence[tuple[str, str]]) -> list[str]:
    """ "name   value" lines with the values aligned (a record, as `kinkctl status` shows)."""
    width = max((len(name) for name, _ in pairs), default=0)
    return [f"{name.ljust(width)}{GAP}{value}".rstrip() for name, value in pairs]
