"""`provider: transformers`: a local model run in-process with Hugging Face transformers (CPU or CUDA).

`model` is a model directory (relative paths resolve against the recipe's folder) or a Hugging Face id that is
already in the local cache: nothing is downloaded unless `local_files_only: false`. The model's own chat template
renders the tools (or `chat_template`, a template file); the reply's tool calls are recovered with the same text
parser the OpenAI host uses. torch and transformers are imported only when the model loads.
"""
from __future__ import annotations

import asyncio
import threading
import uuid
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from clinseek.chat_template import function_tools, hf_messages
from clinseek.hosts.base import GenerateContext, HostResponse, Usage
from clinseek.hosts.errors import HostError, HostRequestRejected
from clinseek.hosts.provider import CachingHost, ProviderConfig
from clinseek.hosts.textcalls import parse_text_tool_calls, split_thinking

class TransformersConfig(ProviderConfig):
    provider: str = "transformers"
    revision: str | None = None
    hub_cache_dir: str | None = Field(default=None, description="a Hugging Face cache folder other than the default "
                                                                 "(e.g. a site's shared model store)")
    device: str = Field(default="auto", description="auto (CUDA when available), cpu, cuda or cuda:N")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    max_tokens: int | None = Field(default=1024, ge=1, description="most new tokens per turn")
    chat_template: str | None = Field(default=None, description="a Jinja chat template file replacing the model's")
    chat_template_kwargs: dict[str, Any] = Field(default_factory=dict, description="e.g. enable_thinking: false")
    local_files_only: bool = Field(default=True, description="never download; use the local Hugging Face cache")
    max_concurrency: int = Field(default=1, ge=1, description="generations at once (each holds the model)")


class TransformersHost(CachingHost):
    provider = "transformers"
    Config = TransformersConfig
    config: TransformersConfig

    def __init__(self, config: TransformersConfig, context: Any = None):
        super().__init__(config, context)
        self.model = None
        self.tokenizer = None
        self.device: str | None = None
        self._load_lock = threading.Lock()
        self._semaphore: asyncio.Semaphore | None = None
        self._semaphore_loop = None
        self._template: str | None = None

    def default_site_local(self) -> bool:
        return True  # runs in this process

    def describe(self) -> dict[str, Any]:
        out = {"provider": self.provider, "model": self.config.model, "site_local": self.site_local}
        if self.device:
            out["device"] = self.device
        return out

    # Loading -----------------------------------------------------------------------------------------------
    def source(self) -> str:
        """The model directory if one exists (relative to the recipe), else the Hugging Face id as written."""
        raw = Path(self.config.model).expanduser()
        base = getattr(self.context, "recipe_dir", None) if self.context is not None else None
        for candidate in ([raw] if raw.is_absolute() else [Path(base) / raw] if base else []) + [raw]:
            if candidate.is_dir():
                return str(candidate)
        return self.config.model

    def load(self) -> None:
        """Load tokenizer and model once (thread-safe); called by the first generate."""
        with self._load_lock:
            if self.model is not None:
                return
            import torch
            from transformers import AutoModelForCausalLM, AutoTokenizer

            cfg = self.config
            src = self.source()
            options: dict[str, Any] = {"local_files_only": cfg.local_files_only}
            if cfg.revision:
                options["revision"] = cfg.revision
            if cfg.hub_cache_dir:
                options["cache_dir"] = str(Path(cfg.hub_cache_dir).expanduser())
            try:
                tokenizer = AutoTokenizer.from_pretrained(src, **options)
                dtype = "auto" if cfg.dtype == "auto" else getattr(torch, cfg.dtype)
                model = AutoModelForCausalLM.from_pretrained(src, dtype=dtype, **options)
            except (OSError, ValueError) as exc:
                raise HostRequestRejected(
                    f"cannot load model {cfg.model!r}: {str(exc).splitlines()[0][:300]}", where=self.where(),
                    hint="give a model directory, or an id already in the Hugging Face cache "
                         "(`huggingface-cli download <id>` on a machine with access); set "
                         "host.local_files_only: false to allow downloading") from exc
            device = cfg.device
            if device == "auto":
                device = "cuda" if torch.cuda.is_available() else "cpu"
            if device.startswith("cuda") and not torch.cuda.is_available():
                raise HostRequestRejected("host.device asks for CUDA but no GPU is visible", where=self.where(),
                                          hint="use device: cpu (or auto)")
            model.to(device)
            model.eval()
            if cfg.chat_template:
                path = Path(cfg.chat_template).expanduser()
                base = getattr(self.context, "recipe_dir", None) if self.context is not None else None
                if not path.is_absolute() and base:
                    path = Path(base) / path
                try:
                    self._template = path.read_text(encoding="utf-8")
                except OSError as exc:
                    raise HostRequestRejected(f"cannot read chat_template {str(path)!r}: {exc}",
                                              where=self.where()) from exc
            elif not getattr(tokenizer, "chat_template", None):
                raise HostRequestRejected(f"model {cfg.model!r} has no chat template", where=self.where(),
                                          hint="set host.chat_template to a Jinja template file that renders tools")
            self.tokenizer, self.device, self.model = tokenizer, device, model

    def where(self) -> str:
        return f"host transformers {self.config.model}"

    # Generation ----------------------------------------------------------------------------------------------
    async def _generate(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]],
                        ctx: GenerateContext) -> HostResponse:
        loop = asyncio.get_running_loop()
        if self._semaphore is None or self._semaphore_loop is not loop:
            self._semaphore, self._semaphore_loop = asyncio.Semaphore(self.config.max_concurrency), loop
        async with self._semaphore:
            return await asyncio.to_thread(self.generate_sync, messages, tools, ctx)

    def render(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> str:
        """The prompt text the model sees (chat template with tools, generation prompt added)."""
        options: dict[str, Any] = dict(self.config.chat_template_kwargs)
        if self._template:
            options["chat_template"] = self._template
        try:
            return self.tokenizer.apply_chat_template(
                hf_messages(messages), tools=function_tools(tools) or None, tokenize=False,
                add_generation_prompt=True, **options)
        except Exception as exc:  # noqa: BLE001 - template errors are the recipe's to fix
            raise HostError(f"the chat template failed: {exc}", where=self.where(),
                            hint="check host.chat_template / chat_template_kwargs") from exc

    def logits_processors(self, prompt_length: int, tools: list[dict[str, Any]], ctx: GenerateContext) -> list:
        """Extra logits processors for one generation (none by default; subclasses constrain decoding here)."""
        return []

    def generate_sync(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]],
                      ctx: GenerateContext) -> HostResponse:
        import time

        import torch
        from transformers import LogitsProcessorList

        self.load()
        started = time.perf_counter()
        cfg = self.config
        tok = self.tokenizer
        prompt = self.render(messages, tools)
        encoded = tok(prompt, return_tensors="pt", add_special_tokens=False)
        input_ids = encoded["input_ids"].to(self.device)
        attention = encoded["attention_mask"].to(self.device)
        prompt_length = input_ids.shape[1]
        sample = bool(cfg.temperature)
        options: dict[str, Any] = {"max_new_tokens": cfg.max_tokens or 1024, "do_sample": sample,
                                   "pad_token_id": tok.pad_token_id if tok.pad_token_id is not None
                                   else tok.eos_token_id}
        if sample:
            options["temperature"] = cfg.temperature
            if cfg.top_p is not None:
                options["top_p"] = cfg.top_p
            if cfg.seed is not None:
                torch.manual_seed(cfg.seed + ctx.run_index)
        else:  # greedy: say so, so a model's generation_config cannot switch sampling back on
            options.update(temperature=None, top_p=None, top_k=None)
        if cfg.stop:
            options.update(stop_strings=cfg.stop, tokenizer=tok)
        processors = self.logits_processors(prompt_length, tools, ctx)
        if processors:
            options["logits_processor"] = LogitsProcessorList(processors)
        with torch.inference_mode():
            output = self.model.generate(input_ids=input_ids, attention_mask=attention, **options)
        new_ids = output[0, prompt_length:].tolist()
        stop_ids = _stop_ids(tok, self.model)
        finish = "length"
        for i, token in enumerate(new_ids):
            if token in stop_ids:
                new_ids, finish = new_ids[:i], "stop"
                break
        text = tok.decode(new_ids, skip_special_tokens=False)
        reasoning, text = split_thinking(text)
        found = parse_text_tool_calls(text, tools=tools or None)
        provider_data = {"reasoning_content": reasoning} if reasoning else {}
        if found.calls:
            provider_data["text_tool_calls"] = True
            finish = "tool_calls"
        usage = Usage(input_tokens=prompt_length, output_tokens=len(output[0]) - prompt_length)
        return HostResponse(content=found.content if found.calls else (text.strip() or None),
                            tool_calls=found.calls, usage=usage, latency_s=time.perf_counter() - started,
                            response_id=f"local-{uuid.uuid4().hex[:12]}", finish_reason=finish,
                            provider_data=provider_data)


def _stop_ids(tokenizer: Any, model: Any) -> set[int]:
    ids: set[int] = set()
    for source in (getattr(model, "generation_config", None), tokenizer):
        eos = getattr(source, "eos_token_id", None)
        if isinstance(eos, int):
            ids.add(eos)
        elif isinstance(eos, (list, tuple)):
            ids.update(int(e) for e in eos)
    if tokenizer.pad_token_id is not None:
        ids.add(tokenizer.pad_token_id)
    return ids
