#!/usr/bin/env python3
"""Send a realistic mixed workload through the sidecar with the real `openai` SDK (used by scripts/demo).

Chinese and English, short and long prompts, streaming and not, several users, concurrently; and with
`--tools N`, N agent turns: a request with tools (weather, flights), and when the model calls one, a
follow-up turn with the tool's result. Real models: SmolLM2 behind llama.cpp's function-calling chat format
(`smollm2-tools`); simulated ones call tools the way the simulator does.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time

import openai

PROMPTS_ZH = [
    "请解释一下什么是灰度发布，以及它为什么能降低上线风险。",
    "帮我写一段话，介绍在团队里推行代码评审的好处和注意事项。",
    "我们的服务最近延迟变高了，应该从哪些方面排查？请分步骤说明。",
    "用通俗的语言解释数据库索引的原理，并说明什么时候不该加索引。",
    "请总结一下远程办公对团队协作的影响，给出三条改进建议。",
    "如何向非技术背景的管理者解释技术债务？",
    "写一段关于城市垃圾分类推广经验的短文。",
    "请比较一下批处理和流处理的适用场景。",
    "新员工入职第一周应该怎么安排，才能尽快熟悉业务？",
    "简单说说机器学习模型上线后为什么需要持续监控。",
    "请介绍一下如何制定一个可执行的季度目标。",
    "解释一下缓存穿透、缓存击穿和缓存雪崩的区别。",
]
PROMPTS_EN = [
    "Explain what a canary release is and why it lowers the risk of a deployment.",
    "Write a short paragraph on the benefits of code review and what to watch out for.",
    "Our service latency went up last week. How should we investigate, step by step?",
    "Explain database indexes in plain words, and when not to add one.",
    "Summarise how remote work affects team collaboration and suggest three improvements.",
    "How would you explain technical debt to a non-technical manager?",
    "Give advice for planning a new engineer's first week on the team.",
    "Compare batch processing and stream processing: when does each fit?",
    "Why does a machine learning model need monitoring after it ships?",
    "How do you set quarterly goals that a team can actually act on?",
    "What is the difference between a process and a thread?",
    "Describe a good incident post-mortem in a few sentences.",
]


# The primary samples with a repetition penalty, as a production chat service would.
SAMPLING = {"temperature": 0.7, "top_p": 0.9}
PENALTY = {"repeat_penalty": 1.3}


async def one_request(
    client: openai.AsyncOpenAI, prompt: str, user: str, stream: bool, *, real: bool, max_tokens: int
) -> int:
    chinese = any("\u4e00" <= ch <= "\u9fff" for ch in prompt)
    if real and chinese:
        # Gemma-3-270M is a base model: a plain completion template, on /v1/completions.
        kwargs = {
            "model": "gemma3",
            "prompt": f"问题：{prompt}\n回答：",
            "max_tokens": max_tokens,
            **SAMPLING,
        }
        if stream:
            chunks = await client.completions.create(**kwargs, stream=True, extra_body=PENALTY)
            return len("".join([c.choices[0].text async for c in chunks if c.choices]))
        result = await client.completions.create(**kwargs, extra_body=PENALTY)
        return len(result.choices[0].text)
    messages = [
        {"role": "system", "content": "You are a concise assistant."},
        {"role": "user", "content": prompt},
    ]
    model = "smollm2" if real else "primary"
    kwargs = {"model": model, "messages": messages, "user": user, "max_tokens": max_tokens, **SAMPLING}
    extra = PENALTY if real else None
    if stream:
        chunks = await client.chat.completions.create(**kwargs, stream=True, extra_body=extra)
        return len("".join([c.choices[0].delta.content or "" async for c in chunks if c.choices]))
    result = await client.chat.completions.create(**kwargs, extra_body=extra)
    return len(result.choices[0].message.content or "")


TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Current weather in a city",
            "parameters": {
                "type": "object",
                "properties": {
                    "city": {"type": "string"},
                    "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                },
                "required": ["city"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "search_flights",
            "description": "Flights between two cities on a date",
            "parameters": {
                "type": "object",
                "properties": {
                    "origin": {"type": "string"},
                    "destination": {"type": "string"},
                    "date": {"type": "string"},
                },
                "required": ["origin", "destination"],
            },
        },
    },
]
TOOL_PROMPTS = [
    "What is the weather in {a}?",
    "Is it raining in {a} right now?",
    "Find me a flight from {a} to {b} next Monday.",
    "{a}的天气怎么样？",
]
CITIES = ["Paris", "London", "Tokyo", "Berlin", "Madrid", "Rome", "Beijing", "Shanghai"]


async def one_tool_turn(
    client: openai.AsyncOpenAI, prompt: str, user: str, stream: bool, *, real: bool, max_tokens: int
) -> int:
    """One agent turn, and the follow-up with the tool's (made-up) result when the model called a tool."""
    model = "smollm2-tools" if real else "primary"
    messages: list[dict] = [{"role": "user", "content": prompt}]
    # tool_choice "auto" is OpenAI's default with tools; llama.cpp's function-calling format needs it said.
    kwargs = {
        "model": model,
        "tools": TOOLS,
        "tool_choice": "auto",
        "user": user,
        "max_tokens": max_tokens,
        "temperature": 0,
    }
    if stream and real:
        # llama-cpp-python streams a tool call only for a named tool_choice (with "auto" its server exits:
        # "Automatic streaming tool choice is not supported").
        name = "search_flights" if "flight" in prompt else "get_weather"
        kwargs["tool_choice"] = {"type": "function", "function": {"name": name}}
    if stream:
        calls: dict[int, dict] = {}
        chunks = await client.chat.completions.create(messages=messages, stream=True, **kwargs)
        async for chunk in chunks:
            for delta_call in (chunk.choices[0].delta.tool_calls or []) if chunk.choices else []:
                call = calls.setdefault(delta_call.index, {"id": None, "name": "", "arguments": ""})
                call["id"] = call["id"] or delta_call.id
                if delta_call.function:
                    call["name"] = call["name"] or delta_call.function.name or ""  # some servers repeat it
                    call["arguments"] += delta_call.function.arguments or ""
        tool_calls = [calls[i] for i in sorted(calls)]
    else:
        result = await client.chat.completions.create(messages=messages, **kwargs)
        tool_calls = [
            {"id": c.id, "name": c.function.name, "arguments": c.function.arguments}
            for c in result.choices[0].message.tool_calls or []
        ]
    if not tool_calls:
        return 0
    messages.append(
        {
            "role": "assistant",
            # OpenAI's shape is null; llama-cpp-python's server accepts only a string here.
            "content": "" if real else None,
            "tool_calls": [
                {
                    "id": c["id"],
                    "type": "function",
                    "function": {"name": c["name"], "arguments": c["arguments"]},
                }
                for c in tool_calls
            ],
        }
    )
    for call in tool_calls:
        messages.append(
            {"role": "tool", "tool_call_id": call["id"], "content": '{"result": "18 C, light wind"}'}
        )
    try:
        await client.chat.completions.create(messages=messages, **kwargs)
    except openai.APIStatusError as exc:  # a small model's server may refuse its own follow-up; say so
        print(f"  follow-up turn refused by the model server: {str(exc)[:120]}", file=sys.stderr)
    return len(tool_calls)


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--base-url", required=True, help="the sidecar's OpenAI base URL")
    parser.add_argument("--real-models", action="store_true", help="smollm2 (English chat), gemma3 (Chinese)")
    parser.add_argument("--max-tokens", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=2, help="passes over the prompt list")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--tools", type=int, default=0, help="agent turns with tools (and their follow-ups)")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    jobs = [
        (prompt, f"user-{rng.randrange(40)}", rng.random() < 0.5)
        for _ in range(args.rounds)
        for prompt in PROMPTS_ZH + PROMPTS_EN
    ]
    tool_jobs = [
        (
            rng.choice(TOOL_PROMPTS).format(a=rng.choice(CITIES), b=rng.choice(CITIES)),
            f"user-{rng.randrange(40)}",
            rng.random() < 0.5,
        )
        for _ in range(args.tools)
    ]
    rng.shuffle(jobs)
    client = openai.AsyncOpenAI(base_url=args.base_url, api_key="sk-demo-user", max_retries=1, timeout=120)
    gate = asyncio.Semaphore(args.concurrency)
    done = 0
    started = time.perf_counter()

    async def run(prompt: str, user: str, stream: bool) -> None:
        nonlocal done
        async with gate:
            await one_request(client, prompt, user, stream, real=args.real_models, max_tokens=args.max_tokens)
            done += 1
            if done % 8 == 0 or done == len(jobs):
                print(f"  {done}/{len(jobs)} requests answered", file=sys.stderr, flush=True)

    calls = 0

    async def run_tools(prompt: str, user: str, stream: bool) -> None:
        nonlocal calls
        async with gate:
            calls += await one_tool_turn(client, prompt, user, stream, real=args.real_models, max_tokens=96)

    await asyncio.gather(*(run(*job) for job in jobs), *(run_tools(*job) for job in tool_jobs))
    await client.close()
    print(f"sent {len(jobs)} requests in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    if tool_jobs:
        print(f"agent turns: {len(tool_jobs)}, tool calls made by the primary: {calls}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
