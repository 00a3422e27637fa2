"""Toolset `ehr_reference`: the reference system's EHR tool names and argument shapes, on clinseek's guarded backend.

The released ClinSeek-35B-A3B was trained on these names (`load_ehr`, `get_records_by_time`, ...) and on their
arguments, which name the patient (`subject_id`) and free time ranges. Here they are served by the same scoped,
read-only backend as the `ehr` tools: the patient and the cutoff stay bound by the engine, so an argument naming
another patient, or a time after the prediction time, is refused with a reason the model can act on; never
honoured. The reference's MCP client shows them as `ehr.<name>`: OpenAI and Anthropic reject dots in tool names,
so they are offered as the bare names (docs/ehr.md, "Reference-compatible tools").
"""
from __future__ import annotations

from datetime import datetime

from clinseek.errors import ToolError
from clinseek.toolsets import Episode, tool
from clinseek_ehr.toolset import EhrToolset

_DAY_ONLY = 10  # 'YYYY-MM-DD'


class EhrReferenceToolset(EhrToolset):
    name = "ehr_reference"
    foreign_tool_names = True   # the reference's own names, unprefixed: what the released model was trained on
    description = ("The patient's EHR tables through the reference ClinSeekAgent system's tools (load_ehr, "
                   "get_records_by_time, run_sql_query, ...), limited to this patient and to what was known at "
                   "the prediction time.")

    @classmethod
    def tool_specs(cls):
        # Only the reference's names: the `ehr_*` tools of the parent class are not offered here.
        return [s for s in super().tool_specs() if s.name in REFERENCE_TOOLS]

    # Argument checks ---------------------------------------------------------------------------------------
    def _patient(self, episode: Episode, subject_id: str | int) -> None:
        bound = str(episode.binding.subject_id)
        if str(subject_id).strip().strip("'\"") != bound:
            raise ToolError(f"this episode is about patient {bound}; subject_id {subject_id!r} is refused. "
                            f"Call the tool again with subject_id '{bound}'.")

    def _time(self, episode: Episode, text: str, what: str, end: bool = False) -> datetime:
        raw = str(text or "").strip()
        try:
            ts = datetime.fromisoformat(raw.replace("T", " "))
        except ValueError:
            raise ToolError(f"{what} must look like 'YYYY-MM-DD HH:MM:SS' or 'YYYY-MM-DD', got {text!r}") from None
        if end and len(raw) <= _DAY_ONLY:
            ts = ts.replace(hour=23, minute=59, second=59)   # a day as the end of a range means the whole day
        cutoff = episode.binding.prediction_time
        if ts > cutoff:
            raise ToolError(f"{what} {raw} is after the current time {cutoff:%Y-%m-%d %H:%M:%S}: nothing later "
                            f"exists for this question. Use a time at or before {cutoff:%Y-%m-%d %H:%M:%S}.")
        return ts

    def _column(self, table: str, column: str) -> str:
        name = (column or "").strip().strip('"').lower()
        cols = self.scope.tables[table].columns
        if name not in cols:
            raise ToolError(f"column {column!r} is not in {table}; its columns: {', '.join(cols)}")
        return name

    # The reference's tools -------------------------------------------------------------------------------
    @tool
    def load_ehr(self, episode: Episode, subject_id: str) -> str:
        """Load the patient's EHR and list its tables. Call it first.

        Args:
            subject_id: the patient's id (e.g. '10000032').
        """
        self._patient(episode, subject_id)
        return f"EHR loaded for patient {episode.binding.subject_id}.\n" + self.ehr_tables(episode)

    @tool
    def get_table_names(self, episode: Episode, subject_id: str) -> str:
        """List the EHR tables available for the patient.

        Args:
            subject_id: the patient's id.
        """
        self._patient(episode, subject_id)
        return self.ehr_tables(episode)

    @tool
    def get_column_names(self, episode: Episode, subject_id: str, table_name: str) -> str:
        """The columns of one table, their types and meanings, with example values.

        Args:
            subject_id: the patient's id.
            table_name: a table name from get_table_names.
        """
        self._patient(episode, subject_id)
        return self.ehr_describe(episode, table_name)

    @tool
    def get_records_by_time(self, episode: Episode, subject_id: str, table_name: str, start_time: str,
                            end_time: str) -> str:
        """Records of one table whose time falls in a range (both ends included).

        Args:
            subject_id: the patient's id.
            table_name: a patient table.
            start_time: 'YYYY-MM-DD HH:MM:SS' or 'YYYY-MM-DD'.
            end_time: 'YYYY-MM-DD HH:MM:SS' or 'YYYY-MM-DD', at or before the current time.
        """
        self._patient(episode, subject_id)
        name = self._table_arg(table_name, allow_dictionary=False)
        start = self._time(episode, start_time, "start_time")
        end = self._time(episode, end_time, "end_time", end=True)
        ts = self.scope.tables[name]
        if not ts.time_sql:
            raise ToolError(f"table {name} has no time column; use get_latest_records or run_sql_query")
        res = self.run_sql(episode, f"SELECT * FROM {name} WHERE CAST({ts.time_sql} AS TIMESTAMP) BETWEEN "
                           f"CAST('__start__' AS TIMESTAMP) AND CAST('__end__' AS TIMESTAMP) ORDER BY CAST({ts.time_sql} AS TIMESTAMP), 1",
                           trusted=True, literals={"__start__": f"{start:%Y-%m-%d %H:%M:%S}",
                                                   "__end__": f"{end:%Y-%m-%d %H:%M:%S}"})
        return self._render(res, "more rows: narrow the time range")

    @tool
    def get_event_counts_by_time(self, episode: Episode, subject_id: str, start_time: str, end_time: str) -> str:
        """How many events each table holds in a time range.

        Args:
            subject_id: the patient's id.
            start_time: 'YYYY-MM-DD HH:MM:SS' or 'YYYY-MM-DD'.
            end_time: 'YYYY-MM-DD HH:MM:SS' or 'YYYY-MM-DD', at or before the current time.
        """
        self._patient(episode, subject_id)
        start = self._time(episode, start_time, "start_time")
        end = self._time(episode, end_time, "end_time", end=True)
        lines = [f"Event counts between {start:%Y-%m-%d %H:%M:%S} and {end:%Y-%m-%d %H:%M:%S}:"]
        for name in self.patient_tables:
            ts = self.scope.tables[name]
            if not ts.time_sql:
                continue
            res = self.run_sql(episode, f"SELECT count(*) FROM {name} WHERE CAST({ts.time_sql} AS TIMESTAMP) BETWEEN "
                               "CAST('__start__' AS TIMESTAMP) AND CAST('__end__' AS TIMESTAMP)", trusted=True,
                               literals={"__start__": f"{start:%Y-%m-%d %H:%M:%S}",
                                         "__end__": f"{end:%Y-%m-%d %H:%M:%S}"})
            n = int(res.rows[0][0]) if res.rows else 0
            if n:
                lines.append(f"- {name}: {n} events")
        if len(lines) == 1:
            lines.append("(no events in that range)")
        return "\n".join(lines)

    @tool
    def get_latest_records(self, episode: Episode, subject_id: str, table_name: str) -> str:
        """The most recent records of one table (up to the current time).

        Args:
            subject_id: the patient's id.
            table_name: a patient table.
        """
        self._patient(episode, subject_id)
        return self.ehr_latest(episode, table_name)

    @tool
    def get_records_by_keyword(self, episode: Episode, subject_id: str, table_name: str, keyword: str) -> str:
        """Records of one table whose text columns contain a keyword.

        Args:
            subject_id: the patient's id.
            table_name: the table to search.
            keyword: a literal word or phrase.
        """
        self._patient(episode, subject_id)
        return self.ehr_search(episode, keyword, table_name)

    @tool
    def get_records_by_value(self, episode: Episode, subject_id: str, table_name: str, column_name: str,
                             value: str) -> str:
        """Records of one table where a column equals a value exactly (compared as text).

        Args:
            subject_id: the patient's id.
            table_name: the table to search (a patient table or a dictionary such as d_labitems).
            column_name: the column to compare.
            value: the exact value.
        """
        self._patient(episode, subject_id)
        name = self._table_arg(table_name)
        col = self._column(name, column_name)
        res = self.run_sql(episode, f"SELECT * FROM {name} WHERE trim(CAST({col} AS VARCHAR)) = '__value__'",
                           trusted=True, literals={"__value__": str(value).strip()})
        return self._render(res, "more rows: add a condition with run_sql_query")

    @tool
    def get_unique_values(self, episode: Episode, subject_id: str, table_name: str, column_name: str) -> str:
        """The distinct values of one column, most frequent first.

        Args:
            subject_id: the patient's id.
            table_name: a table name.
            column_name: the column.
        """
        self._patient(episode, subject_id)
        name = self._table_arg(table_name)
        col = self._column(name, column_name)
        res = self.run_sql(episode, f"SELECT {col}, count(*) AS n FROM {name} GROUP BY {col} "
                                    f"ORDER BY n DESC, {col}", trusted=True)
        return self._render(res)

    @tool
    def run_sql_query(self, episode: Episode, subject_id: str, sql_query: str) -> str:
        """Run one read-only SELECT over the patient's tables (DuckDB SQL).

        Args:
            subject_id: the patient's id.
            sql_query: one SELECT statement.
        """
        self._patient(episode, subject_id)
        return self.ehr_sql(episode, sql_query)

    @tool
    def think(self, episode: Episode, thought: str) -> str:
        """Write down reasoning; it changes nothing and returns nothing new.

        Args:
            thought: the reasoning.
        """
        return "Thought recorded."


REFERENCE_TOOLS = ("load_ehr", "get_table_names", "get_column_names", "get_records_by_time",
                   "get_event_counts_by_time", "get_latest_records", "get_records_by_keyword",
                   "get_records_by_value", "get_unique_values", "run_sql_query", "think")
