"""Parsers of what Slurm's commands print: sbatch, qsub, squeue, scontrol, sacct.

Pure functions over text, so they are tested without a cluster. Formats are those of Slurm
22.05 and later; the fields we ask for are named explicitly wherever a command allows it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from modelseal.jobs.errors import JobError

__all__ = [
    "SACCT_FIELDS",
    "SQUEUE_FIELDS",
    "SQUEUE_FORMAT",
    "first",
    "parse_exit_code",
    "parse_sacct",
    "parse_scontrol_job",
    "parse_squeue",
    "parse_submit_output",
]

_JOB_ID = re.compile(r"\d+(?:_\d+)?")

# squeue --format: the name comes last so that a '|' in it cannot shift the other fields.
SQUEUE_FIELDS = ("JobId", "JobState", "UserId", "Partition", "NodeList", "Reason", "JobName")
SQUEUE_FORMAT = "%i|%T|%u|%P|%N|%r|%j"
SACCT_FIELDS = ("JobID", "JobName", "State", "ExitCode", "NodeList", "Partition", "User",
                "Submit", "Start", "End", "WorkDir")  # fmt: skip


def parse_submit_output(text: str) -> str:
    """The job id in what ``sbatch`` (plain or ``--parsable``) or ``qsub`` printed.

    ``Submitted batch job 42``, ``42``, ``42;cluster`` and the TORQUE wrapper's last line
    ``42`` all give ``"42"``.
    """
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if lines:
        last = lines[-1]
        match = re.fullmatch(r"Submitted batch job (\d+)(?: on cluster \S+)?", last)
        if match:
            return match.group(1)
        candidate = last.split(";", 1)[0].strip().split()[-1] if last.split() else ""
        candidate = candidate.split(".", 1)[0]  # TORQUE style "42.server"
        if _JOB_ID.fullmatch(candidate):
            return candidate
    raise JobError(f"the scheduler accepted the job but printed no job id: {text.strip()!r}")


def parse_squeue(text: str) -> list[dict[str, str]]:
    """Rows of ``squeue --noheader --format=SQUEUE_FORMAT`` as dicts keyed by SQUEUE_FIELDS."""
    rows: list[dict[str, str]] = []
    for line in text.splitlines():
        if not line.strip():
            continue
        values = line.split("|", len(SQUEUE_FIELDS) - 1)
        if len(values) != len(SQUEUE_FIELDS):
            raise JobError(f"unexpected squeue line: {line!r}")
        rows.append({key: value.strip() for key, value in zip(SQUEUE_FIELDS, values, strict=True)})
    return rows


_KEY = re.compile(r"(?:^|\s)([A-Za-z][A-Za-z0-9_:/.]*)=")


def parse_scontrol_job(text: str) -> list[dict[str, str]]:
    """Jobs in ``scontrol show job [--oneliner]`` output, each a dict of its ``Key=Value`` pairs.

    Values may contain spaces (``Command=/path/with a space``, ``Reason=…``), so a value runs up
    to the next `` Key=``; records are separated by blank lines (or are one line each with
    ``--oneliner``).
    """
    records: list[str] = []
    current: list[str] = []
    for line in text.splitlines():
        if line.startswith("JobId=") and current:
            records.append(" ".join(current))
            current = []
        if line.strip():
            current.append(line.strip())
        elif current:
            records.append(" ".join(current))
            current = []
    if current:
        records.append(" ".join(current))
    return [_key_values(record) for record in records if record.startswith("JobId=")]


def _key_values(record: str) -> dict[str, str]:
    matches = list(_KEY.finditer(record))
    values: dict[str, str] = {}
    for index, match in enumerate(matches):
        end = matches[index + 1].start() if index + 1 < len(matches) else len(record)
        values.setdefault(match.group(1), record[match.end() : end].strip())
    return values


def parse_sacct(text: str) -> list[dict[str, str]]:
    """Rows of ``sacct --parsable2 --noheader --format=SACCT_FIELDS`` keyed by SACCT_FIELDS."""
    rows: list[dict[str, str]] = []
    for line in text.splitlines():
        if not line.strip():
            continue
        values = line.split("|")
        if len(values) != len(SACCT_FIELDS):
            raise JobError(f"unexpected sacct line: {line!r}")
        rows.append(dict(zip(SACCT_FIELDS, values, strict=True)))
    return rows


def parse_exit_code(value: str) -> tuple[int | None, int | None]:
    """``"2:0"`` → (2, None); ``"0:15"`` → (None, 15): the exit code or the ending signal."""
    match = re.fullmatch(r"(\d+):(\d+)", value.strip())
    if not match:
        return None, None
    code, signal = int(match.group(1)), int(match.group(2))
    return (None, signal) if signal else (code, None)


def first(values: Mapping[str, str], *keys: str) -> str | None:
    """The first of ``keys`` present with a meaningful value (Slurm prints ``(null)``, ``N/A``)."""
    for key in keys:
        value = values.get(key)
        if value and value not in {"(null)", "N/A", "None", "Unknown", "n/a"}:
            return value
    return None
