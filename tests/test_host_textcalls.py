"""The text tool-call parser: each format servers and open models produce, and the malformed cases."""
from __future__ import annotations

from clinseek.hosts.textcalls import parse_arguments, parse_text_tool_calls

NAMES = ["ehr_sql", "kb_search", "finish"]


def calls(found):
    return [(c.name, c.arguments, c.error is not None) for c in found.calls]


def test_hermes_qwen_blocks_several_and_surrounding_text():
    text = ('I will look.\n<tool_call>\n{"name": "ehr_sql", "arguments": {"query": "SELECT 1"}}\n</tool_call>'
            '\n<tool_call>{"name": "kb_search", "arguments": {"q": "sepsis"}}</tool_call>')
    found = parse_text_tool_calls(text, NAMES)
    assert calls(found) == [("ehr_sql", {"query": "SELECT 1"}, False), ("kb_search", {"q": "sepsis"}, False)]
    assert found.content == "I will look."


def test_hermes_block_without_closing_tag():
    found = parse_text_tool_calls('<tool_call>\n{"name": "finish", "arguments": {"answer": ["yes"]}}', NAMES)
    assert calls(found) == [("finish", {"answer": ["yes"]}, False)] and found.content is None


def test_hermes_malformed_json_keeps_name_raw_and_error():
    found = parse_text_tool_calls('<tool_call>{"name": "ehr_sql", "arguments": {"query": SELECT}}</tool_call>')
    (call,) = found.calls
    assert call.name == "ehr_sql" and call.error and "JSON" in call.error
    assert "SELECT" in call.raw_arguments and call.arguments == {}


def test_tagged_calls_accept_unknown_names_so_the_engine_can_explain():
    found = parse_text_tool_calls('<tool_call>{"name": "web_fetch", "arguments": {}}</tool_call>', NAMES)
    assert calls(found) == [("web_fetch", {}, False)]


def test_llama3_bare_json_with_parameters_and_python_tag():
    found = parse_text_tool_calls('<|python_tag|>{"name": "ehr_sql", "parameters": {"query": "SELECT 2"}}', NAMES)
    assert calls(found) == [("ehr_sql", {"query": "SELECT 2"}, False)]
    several = parse_text_tool_calls('{"name": "kb_search", "parameters": {"q": "a"}}; '
                                    '{"name": "finish", "parameters": {"answer": ["b"]}}', NAMES)
    assert [c[0] for c in calls(several)] == ["kb_search", "finish"]
    listed = parse_text_tool_calls('[{"name": "kb_search", "parameters": {"q": "a"}}]', NAMES)
    assert calls(listed) == [("kb_search", {"q": "a"}, False)]


def test_bare_json_answer_is_not_misread_as_a_call():
    assert parse_text_tool_calls('{"name": "Alice", "age": 70}', NAMES).calls == []
    assert parse_text_tool_calls('{"diagnosis": "sepsis"}', NAMES).calls == []
    plain = parse_text_tool_calls("The answer is yes.", NAMES)
    assert plain.calls == [] and plain.content == "The answer is yes."


def test_mistral_list_and_named_forms():
    found = parse_text_tool_calls('[TOOL_CALLS][{"name": "ehr_sql", "arguments": {"query": "SELECT 4"}}, '
                                  '{"name": "finish", "arguments": {"answer": ["x"]}}]', NAMES)
    assert calls(found) == [("ehr_sql", {"query": "SELECT 4"}, False), ("finish", {"answer": ["x"]}, False)]
    named = parse_text_tool_calls('[TOOL_CALLS]ehr_sql[ARGS]{"query": "SELECT 5"}[TOOL_CALLS]finish[ARGS]'
                                  '{"answer": []}', NAMES)
    assert calls(named) == [("ehr_sql", {"query": "SELECT 5"}, False), ("finish", {"answer": []}, False)]
    broken = parse_text_tool_calls('[TOOL_CALLS]ehr_sql[ARGS]{"query": ', NAMES)
    assert broken.calls[0].name == "ehr_sql" and broken.calls[0].error


def test_function_tags():
    found = parse_text_tool_calls('<function=kb_search>{"q": "copd"}</function>', NAMES)
    assert calls(found) == [("kb_search", {"q": "copd"}, False)]


def test_fenced_json_blocks_only_for_offered_tools():
    text = 'Plan:\n```json\n{"name": "ehr_sql", "arguments": {"query": "SELECT 6"}}\n```\nthen answer.'
    found = parse_text_tool_calls(text, NAMES)
    assert calls(found) == [("ehr_sql", {"query": "SELECT 6"}, False)]
    assert found.content == "Plan:\n\nthen answer."
    assert parse_text_tool_calls('```json\n{"name": "other", "arguments": {}}\n```', NAMES).calls == []
    openai_style = parse_text_tool_calls('```json\n{"function": {"name": "finish", "arguments": '
                                         '"{\\"answer\\": [\\"y\\"]}"}}\n```', NAMES)
    assert calls(openai_style) == [("finish", {"answer": ["y"]}, False)]


def test_ids_are_unique_and_deterministic():
    text = '<tool_call>{"name": "a", "arguments": {}}</tool_call><tool_call>{"name": "b", "arguments": {}}</tool_call>'
    first = [c.id for c in parse_text_tool_calls(text).calls]
    again = [c.id for c in parse_text_tool_calls(text).calls]
    assert first == again and len(set(first)) == 2


def test_parse_arguments():
    assert parse_arguments('{"a": 1}') == ({"a": 1}, None)
    assert parse_arguments('"{\\"a\\": 1}"') == ({"a": 1}, None)  # double-encoded
    assert parse_arguments("") == ({}, None)
    args, problem = parse_arguments("{'a': 1}")
    assert args == {} and "not valid JSON" in problem
    assert "JSON object" in parse_arguments("[1, 2]")[1]


def test_split_thinking():
    from clinseek.hosts.textcalls import split_thinking

    assert split_thinking("<think>a</think>b") == ("a", "b")
    assert split_thinking("no thoughts") == (None, "no thoughts")
    assert split_thinking("a</think>b") == ("a", "b")  # templates that open the block in the prompt


SCHEMAS = [{"name": "ehr_sql", "description": "", "parameters": {"type": "object", "properties": {
    "query": {"type": "string"}, "limit": {"type": "integer"}, "ids": {"type": "array"}}}},
    {"name": "finish", "description": "", "parameters": {"type": "object", "properties": {
        "answer": {"type": "array"}}}}]


def test_qwen3_coder_xml_parameters_follow_the_schema_types():
    text = ("Checking.\n<tool_call>\n<function=ehr_sql>\n<parameter=query>\nSELECT 1\n</parameter>\n"
            "<parameter=limit>\n5\n</parameter>\n<parameter=ids>\n[1, 2]\n</parameter>\n</function>\n</tool_call>"
            "\n<tool_call>\n<function=finish>\n<parameter=answer>\n[\"yes\"]\n</parameter>\n</function>\n"
            "</tool_call>")
    found = parse_text_tool_calls(text, tools=SCHEMAS)
    assert calls(found) == [("ehr_sql", {"query": "SELECT 1", "limit": 5, "ids": [1, 2]}, False),
                            ("finish", {"answer": ["yes"]}, False)]
    assert found.content == "Checking."
    # a string parameter that looks like a number stays a string
    numeric = parse_text_tool_calls("<function=ehr_sql><parameter=query>42</parameter></function>", tools=SCHEMAS)
    assert numeric.calls[0].arguments == {"query": "42"}
