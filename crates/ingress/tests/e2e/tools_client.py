# Drives the gateway's output filter with real clients: tool calls through the `openai`
# client (streamed and not), and the Anthropic Messages API through the `anthropic` client
# when it is installed. Prints one JSON object of outcomes.
import json, sys
import openai

base, alice, svc = sys.argv[1:4]
out = {}


def oa(url, key):
    return openai.OpenAI(base_url=url, api_key=key, max_retries=0, timeout=30)


TOOLS = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]
MSGS = [{"role": "system", "content": "You are a billing bot."},
        {"role": "user", "content": "Please LEAK-TOOL now"}]


def tool_stream(name, url, key):
    args, ids = {}, {}
    try:
        s = oa(url, key).chat.completions.create(model="gpt-4o-mini", messages=MSGS, tools=TOOLS, stream=True)
        for c in s:
            for t in (c.choices[0].delta.tool_calls or []) if c.choices else []:
                args[t.index] = args.get(t.index, "") + ((t.function.arguments or "") if t.function else "")
                if t.id:
                    ids[t.index] = ids.get(t.index, "") + t.id
        out[name] = {"arguments": args.get(0, ""), "id": ids.get(0)}
    except openai.APIError as e:
        body = getattr(e, "body", None) or {}
        out[name] = {"error": type(e).__name__, "code": body.get("code") if isinstance(body, dict) else None,
                     "partial": args.get(0, ""), "leaked": "pcn-" in args.get(0, "")}


def tool_json(name, url, key):
    r = oa(url, key).chat.completions.create(model="gpt-4o-mini", messages=MSGS, tools=TOOLS)
    t = r.choices[0].message.tool_calls[0]
    out[name] = {"arguments": t.function.arguments, "id": t.id,
                 "completion_tokens": r.usage.completion_tokens}


# Canary redacted on the `claude` route, cut on the `chat` route.
tool_stream("tool_stream_redacted", f"{base}/anthropic/v1", svc)
tool_json("tool_json_redacted", f"{base}/anthropic/v1", svc)
tool_stream("tool_stream_blocked", f"{base}/v1", alice)

try:
    import anthropic
except ImportError:
    anthropic = None

if anthropic is None:
    out["anthropic"] = "missing"
else:
    a = anthropic.Anthropic(base_url=f"{base}/anthropic", api_key=svc, max_retries=0, timeout=30)

    def ask(content, system="You are a billing bot."):
        return dict(model="claude-test", max_tokens=256, system=system,
                    messages=[{"role": "user", "content": content}])

    def dump(m):
        blocks = [{"type": b.type, "text": getattr(b, "text", None), "input": getattr(b, "input", None)}
                  for b in m.content]
        return {"blocks": blocks, "input_tokens": m.usage.input_tokens, "output_tokens": m.usage.output_tokens}

    out["messages_canary"] = dump(a.messages.create(**ask("Please LEAK-CANARY now")))
    out["messages_tool"] = dump(a.messages.create(**ask("Please LEAK-TOOL now")))
    with a.messages.stream(**ask("Please LEAK-CANARY now", system=[{"type": "text", "text": "You are a billing bot."}])) as s:
        text = "".join(s.text_stream)
        final = s.get_final_message()
    out["messages_stream_canary"] = {"text": text, **dump(final)}
    with a.messages.stream(**ask("Please LEAK-TOOL now")) as s:
        for _ in s:
            pass
        final = s.get_final_message()
    out["messages_stream_tool"] = dump(final)
    with a.messages.stream(**ask("hello")) as s:
        text = "".join(s.text_stream)
    out["messages_stream_clean"] = {"text": text}
    # On the `chat` route the canary blocks: the stream ends with the API's error event.
    b = anthropic.Anthropic(base_url=base, api_key=alice, max_retries=0, timeout=30)
    text = ""
    try:
        with b.messages.stream(**{**ask("Please LEAK-CANARY now"), "model": "gpt-4o-mini"}) as s:
            for t in s.text_stream:
                text += t
        out["messages_stream_blocked"] = {"text": text}
    except anthropic.APIError as e:
        body = getattr(e, "body", None) or {}
        err = body.get("error", {}) if isinstance(body, dict) else {}
        out["messages_stream_blocked"] = {"error": type(e).__name__, "type": err.get("type"),
                                          "leaked": "pcn-" in text}
if anthropic is not None:
    # Gateway refusals on the Messages API come in Anthropic's error shape.
    bad = anthropic.Anthropic(base_url=f"{base}/anthropic", api_key="sk-wrong", max_retries=0, timeout=30)
    try:
        bad.messages.create(**ask("hello"))
        out["messages_wrong_key"] = {"error": None}
    except anthropic.APIStatusError as e:
        body = e.body if isinstance(e.body, dict) else {}
        out["messages_wrong_key"] = {"error": type(e).__name__, "status": e.status_code,
                                     "type": (body.get("error") or {}).get("type")}
print(json.dumps(out))
