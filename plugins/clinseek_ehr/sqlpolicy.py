"""What the SQL guard lets a model call: an allow-list of functions and types, and bounds on the few functions
whose output size is set by an argument. Anything not listed is refused (fail closed); docs/ehr.md gives the
reasons per group.

Functions are named by their sqlglot class (how sqlglot parses DuckDB SQL, so `quantile_cont`, `median` and
`percentile_cont` are one class) or, for functions sqlglot does not model (`exp.Anonymous`), by their lower-case
name.
"""
from __future__ import annotations

from datetime import datetime

from sqlglot import exp

from clinseek.errors import ToolError


def _names(text: str) -> frozenset[str]:
    return frozenset(text.split())


# Aggregates and window functions: they read only the rows of the scoped tables they are given.
_AGGREGATES = _names("""
    Avg Count CountIf Sum Min Max Median Mode PercentileCont PercentileDisc ApproxQuantile Quantile ArgMax ArgMin
    First Last AnyValue GroupConcat ArrayAgg Stddev StddevPop StddevSamp Variance VariancePop Corr CovarPop
    CovarSamp RegrSlope RegrIntercept RegrR2 RegrCount RegrAvgx RegrAvgy RegrSxx RegrSxy RegrSyy Kurtosis Skewness
    ApproxDistinct LogicalAnd LogicalOr BitwiseAndAgg BitwiseOrAgg BitwiseXorAgg ArrayUniqueAgg ArrayConcatAgg
    RowNumber Rank DenseRank PercentRank CumeDist Ntile Lag Lead FirstValue LastValue NthValue""")
# Row-level logic, casts and constructors.
_LOGIC = _names("""
    And Or Xor Case If Coalesce Nullif Nvl2 Greatest Least Cast TryCast Try Exists Array Struct StructExtract
    Map MapKeys Explode Unnest Flatten Columns Typeof IsNan IsInf Bracket""")
_MATH = _names("""
    Abs Ceil Floor Round Trunc Sign Sqrt Cbrt Exp Ln Log Pow Pi Radians Degrees Sin Cos Tan Asin Acos Atan Atan2
    Cot Factorial SafeDivide Rand""")
_TEXT = _names("""
    Length Lower Upper Trim Substring Left Right Concat ConcatWs StrPosition Contains StartsWith EndsWith Replace
    Translate Reverse Ascii Chr Unicode Initcap Levenshtein SplitPart Split RegexpLike RegexpILike RegexpReplace
    RegexpExtract RegexpExtractAll RegexpSplit RegexpFullMatch RegexpCount Format ToChar MD5 BitLength ByteLength
    JSONExtract JSONExtractScalar Repeat Pad Space""")
_TIME = _names("""
    Extract DateTrunc TimestampTrunc DatetimeTrunc DateAdd DateSub DateDiff DatetimeAdd DatetimeSub DatetimeDiff
    TimestampAdd TimestampSub TimestampDiff TimeAdd TimeSub TimeDiff TimeToStr StrToTime StrToDate TimeToUnix
    UnixToTime DateFromParts TimestampFromParts Year Month Day Hour Minute Second Quarter Week WeekOfYear DayOfWeek
    DayOfWeekIso DayOfMonth DayOfYear Dayname Monthname LastDay Date Timestamp DateBin TsOrDsToDate TsOrDsAdd
    TsOrDsDiff TsOrDsToTimestamp TimeStrToTime TimeStrToDate MakeInterval AddMonths MonthsBetween
    ConvertTimezone""")
_LISTS = _names("""
    ArraySize ArrayContains ArrayContainsAll ArrayOverlaps ArrayConcat ArrayAppend ArrayPrepend ArraySlice
    ArrayPosition ArrayDistinct ArraySort ArrayMin ArrayMax ArraySum ArrayToString ArrayFilter Transform
    ArrayFirst ArrayLast ArrayReverse ArrayIntersect GenerateSeries""")
ALLOWED_FUNCTIONS = _AGGREGATES | _LOGIC | _MATH | _TEXT | _TIME | _LISTS

# DuckDB and PostgreSQL functions sqlglot parses as exp.Anonymous.
ALLOWED_ANONYMOUS = _names("""
    date_part datepart age epoch epoch_ms epoch_us epoch_ns printf strip_accents nfc_normalize list_extract
    list_element array_extract list_position list_unique list_sum list_avg list_count list_slice list_aggregate
    list_reduce list_select list_zip list_has list_has_any list_has_all array_has array_length cardinality row
    prefix suffix like_escape octet_length strlen length_grapheme regexp_split_to_array regexp_matches jaccard
    jaro_similarity jaro_winkler_similarity damerau_levenshtein hamming mismatches histogram entropy mad
    reservoir_quantile quantile_disc product fsum favg sumkahan kahan_sum arbitrary sum_no_overflow bit_count
    isfinite even gcd lcm greatest_common_divisor least_common_multiple round_even roundbankers to_date
    to_timestamp yearweek isodow isoyear weekday millisecond microsecond era century decade millennium date_sub
    datesub datediff time_bucket make_date make_time make_timestamp to_days to_hours to_minutes to_seconds
    to_months to_years to_weeks to_milliseconds to_microseconds try_strptime strptime strftime ord bar list_value
    list_pack len string_split_regex str_split string_to_array regexp_extract_all bool_or bool_and list_transform
    list_filter array_transform array_filter list_apply array_apply justify_interval justify_days justify_hours
    array_upper array_lower string_agg nullif ifnull list_distinct list_sort list_reverse_sort list_min list_max
    list_concat list_append list_prepend array_concat array_append array_prepend split_part position to_json
    json_object json_array""")

# Clock functions make a run depend on when it ran, and the episode's "now" is its prediction time.
_CLOCK = (exp.CurrentDate, exp.CurrentTimestamp, exp.CurrentTime, exp.Localtimestamp, exp.Localtime)
_CLOCK_NAMES = _names("now today get_current_time get_current_timestamp transaction_timestamp statement_timestamp "
                      "clock_timestamp timeofday")

_T = exp.DataType.Type
ALLOWED_TYPES = frozenset(getattr(_T, n) for n in """
    TINYINT SMALLINT INT BIGINT HUGEINT UTINYINT USMALLINT UINT UBIGINT FLOAT DOUBLE DECIMAL BIGDECIMAL VARCHAR CHAR
    TEXT NCHAR NVARCHAR BOOLEAN DATE TIME TIMESTAMP TIMESTAMPTZ TIMESTAMPNTZ DATETIME INTERVAL ARRAY LIST STRUCT
    MAP JSON""".split() if hasattr(_T, n))

# Output-size bounds: one scalar call runs to completion before any time limit can interrupt it, so a call that
# builds a huge string or list must be refused before it runs.
MAX_TEXT_BUILT = 100_000       # characters one repeat()/lpad()/rpad()/space() call may build
MAX_REPEAT_OF_COLUMN = 100     # repeat(column, n): the column's value length is unknown
MAX_SERIES = 100_000           # elements one range()/generate_series() call may build


def refuse(reason: str, hint: str = "") -> ToolError:
    return ToolError(f"query refused: {reason}" + (f". {hint}" if hint else ""))


def function_name(node: exp.Func) -> str:
    if isinstance(node, exp.Anonymous):
        return str(node.name or "")
    try:
        return node.sql_name().lower()
    except Exception:  # noqa: BLE001
        return type(node).__name__


def check_function(node: exp.Func, available: str) -> None:
    """Refuse a function that is not on the allow-list, or a size-setting argument past its bound."""
    name = function_name(node)
    if isinstance(node, _CLOCK) or (isinstance(node, exp.Anonymous) and name.lower() in _CLOCK_NAMES):
        raise refuse(f"{name}() reads the wall clock; the episode's present is its prediction time",
                     "Write the prediction time as a TIMESTAMP literal instead")
    if isinstance(node, exp.Anonymous):
        allowed = name.lower() in ALLOWED_ANONYMOUS
    else:
        allowed = type(node).__name__ in ALLOWED_FUNCTIONS
    if not allowed:
        raise refuse(f"function {name}() is not on the allowed list (no file, network, settings, statistics or "
                     "catalogue functions)",
                     f"Use plain SQL over the tables ({available}); docs/ehr.md lists the allowed functions")
    if isinstance(node, (exp.Repeat, exp.Space, exp.Pad)):
        _check_text_size(node, name)
    elif isinstance(node, exp.GenerateSeries):
        _check_series(node, name)


def check_type(node: exp.DataType) -> None:
    if node.this not in ALLOWED_TYPES:
        raise refuse(f"type {node.sql(dialect='duckdb')} is not allowed",
                     "Cast to a plain type: INTEGER, BIGINT, DOUBLE, DECIMAL, VARCHAR, DATE, TIMESTAMP, INTERVAL, "
                     "BOOLEAN")


def _int_literal(node) -> int | None:
    if isinstance(node, exp.Neg):
        inner = _int_literal(node.this)
        return -inner if inner is not None else None
    if isinstance(node, exp.Paren):
        return _int_literal(node.this)
    if isinstance(node, exp.Literal) and not node.is_string:
        try:
            value = float(node.this)
        except ValueError:
            return None
        return int(value) if abs(value) < 1e18 else 10 ** 18
    return None


def _check_text_size(node: exp.Func, name: str) -> None:
    if isinstance(node, exp.Repeat):
        count, source = _int_literal(node.args.get("times")), node.this
    elif isinstance(node, exp.Space):
        count, source = _int_literal(node.this), exp.Literal.string(" ")
    else:   # lpad/rpad: the result is exactly `length` characters
        count, source = _int_literal(node.args.get("expression")), None
    if count is None:
        raise refuse(f"{name}() needs a literal number as its count", f"Write the count as a number up to "
                                                                      f"{MAX_TEXT_BUILT}")
    if source is None or (isinstance(source, exp.Literal) and source.is_string):
        built = count * (len(source.this) if source is not None else 1)
        if built > MAX_TEXT_BUILT:
            raise refuse(f"{name}() would build {built:,} characters (limit {MAX_TEXT_BUILT:,})",
                         "Build a shorter string")
    elif count > MAX_REPEAT_OF_COLUMN:
        raise refuse(f"{name}() of a column value may repeat it at most {MAX_REPEAT_OF_COLUMN} times",
                     "Use a smaller count")
    inner = node.this if not isinstance(node, exp.Space) else None
    if inner is not None and inner.find(exp.Repeat, exp.Space, exp.Pad, exp.GenerateSeries) is not None:
        raise refuse(f"{name}() of another repeat/pad/range call is not allowed", "Build the string in one call")


def _check_series(node: exp.GenerateSeries, name: str) -> None:
    start, end, step = node.args.get("start"), node.args.get("end"), node.args.get("step")
    ints = [_int_literal(a) for a in (start, end)]
    if None not in ints:
        stride = 1 if step is None else _int_literal(step)
        if stride is None or stride == 0:
            raise refuse(f"{name}() needs a literal non-zero step", "Write the step as a number")
        span = ints[1] - ints[0]
        count = max(0, span // stride + (0 if node.args.get("is_end_exclusive") and span % stride == 0 else 1))
    else:
        count = _temporal_count(start, end, step)
        if count is None:
            raise refuse(f"{name}() needs literal bounds (numbers, or TIMESTAMP/DATE literals with an INTERVAL step)",
                         f"Write the bounds as literals; at most {MAX_SERIES:,} values")
    if count > MAX_SERIES:
        raise refuse(f"{name}() would build {count:,} values (limit {MAX_SERIES:,})", "Use a smaller range")


_UNIT_S = {"second": 1, "minute": 60, "hour": 3600, "day": 86400, "week": 604800, "month": 28 * 86400,
           "year": 365 * 86400}


def _temporal_count(start, end, step) -> int | None:
    a, b, s = _time_literal(start), _time_literal(end), _interval_seconds(step)
    if a is None or b is None or not s:
        return None
    return max(0, int((b - a).total_seconds() // s) + 1)


def _time_literal(node):
    if isinstance(node, exp.Cast) and node.to.this in (_T.DATE, _T.TIMESTAMP, _T.TIMESTAMPNTZ, _T.DATETIME):
        node = node.this
    if isinstance(node, (exp.TsOrDsToDate, exp.TsOrDsToTimestamp, exp.TimeStrToTime, exp.Date, exp.Timestamp)):
        node = node.this
    if isinstance(node, exp.Literal) and node.is_string:
        try:
            return datetime.fromisoformat(node.this)
        except ValueError:
            return None
    return None


def _interval_seconds(node) -> float | None:
    if not isinstance(node, exp.Interval):
        return None
    text, unit = node.this, node.args.get("unit")
    if isinstance(text, exp.Literal):
        parts = str(text.this).split()
        unit_name = unit.name if unit is not None else (parts[1] if len(parts) > 1 else "")
        try:
            amount = float(parts[0])
        except (ValueError, IndexError):
            return None
        per = _UNIT_S.get(unit_name.lower().rstrip("s"))
        return amount * per if per and amount > 0 else None
    return None
