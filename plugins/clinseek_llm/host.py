"""`provider: llamacpp`: a GGUF model run in this process by llama.cpp (llama-cpp-python), CPU or GPU.

In process, not a managed `llama-server`: no server binary is published for this platform (building one takes
~14 min on 2 cores, llama-cpp-python's library is part of the same build and is all a run needs), there is no
port to pick, guard or leak, and the host owns each slot's KV cache: a turn evaluates only the tokens after the
longest prefix it shares with what the slot already holds (the episode's earlier turns), and the grammar that
constrains a turn is compiled here from the tools offered in that turn.

Slots: `parallel` contexts share the memory-mapped weights; each has its own KV cache and keeps the episode it
last served, so `--workers N` with N slots never makes one episode evict another's prompt.
"""
from __future__ import annotations

import asyncio
import json
import os
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from clinseek.errors import UserError
from clinseek.hosts.base import GenerateContext, HostResponse, Usage
from clinseek.hosts.errors import HostError, HostRequestRejected
from clinseek.hosts.provider import CachingHost, ProviderConfig
from clinseek.hosts.textcalls import parse_text_tool_calls

from .catalog import CATALOG
from .chat import TemplateError, render_chat
from .decode import Grammar, decode_turn
from .gguf import NotGGUF, read_gguf

TEMPLATES = Path(__file__).parent / "templates"
RUNTIME_HINT = "pip install 'clinseek[llm]' (builds llama-cpp-python's CPU library: about 6 min on 2 cores)"


class LlamaCppConfig(ProviderConfig):
    provider: str = "llamacpp"
    model: str = Field(description="a catalog name (clinseek models list) or the path of a .gguf file")
    temperature: float | None = Field(default=0.0, ge=0, description="0: greedy (reproducible)")
    max_tokens: int | None = Field(default=512, ge=1, description="most tokens the model may write per turn")
    context_size: int = Field(default=8192, ge=512, description="tokens per slot (prompt and reply)")
    threads: int | None = Field(default=None, ge=1, description="CPU threads in all (default: every core)")
    parallel: int | Literal["auto"] = Field(
        default="auto", description="slots (episodes generating at once); auto: the run's --workers, at most 4 "
                                    "and at most `threads`")
    gpu_layers: int | Literal["auto"] = Field(
        default="auto", description="layers offloaded to a GPU; auto: all when the runtime was built with GPU "
                                    "support and one is present, else 0 (CPU)")
    chat_template: str | None = Field(default=None, description="a Jinja chat template file replacing the model's")
    constrain_tool_calls: bool = Field(
        default=True, description="each turn may only call offered tools with schema-valid arguments (or finish)")
    preamble_chars: int = Field(default=160, ge=0,
                                description="constrained turns: one line of text allowed before the calls")
    max_calls_per_turn: int = Field(default=3, ge=1, description="constrained turns: most calls in one turn")
    prompt_cache: bool = Field(default=True, description="reuse each slot's KV cache across an episode's turns")
    top_k: int = Field(default=40, ge=0)
    repeat_penalty: float = Field(default=1.0, gt=0)


@dataclass
class _Slot:
    index: int
    llm: Any
    owner: tuple | None = None  # the episode whose tokens the KV cache holds
    grammars: dict[str, str] = field(default_factory=dict)  # grammar text by tool list
    _candidates: Any = None

    def candidates(self, llm: Any) -> Any:
        """The slot's buffer of every token's logit, for the grammar to mask (allocated once)."""
        if self._candidates is None:
            from llama_cpp._internals import LlamaTokenDataArray

            self._candidates = LlamaTokenDataArray(n_vocab=llm.n_vocab())
        return self._candidates


def resolve_model(value: str, context: Any = None) -> tuple[Path, str | None]:
    """(the .gguf path, the shipped template to use or None) for a catalog name or a path (recipe-relative)."""
    from .fetch import cached_path, is_fetched

    cache_dir = getattr(context, "cache_dir", None)
    if value in CATALOG:
        entry = CATALOG[value]
        if not is_fetched(entry, cache_dir):
            raise UserError(f"host.model {value!r} is not in the cache yet",
                            hint=f"run `clinseek models get {value}` first (it prints the path)")
        return cached_path(entry, cache_dir), entry.chat_template
    path = Path(value).expanduser()
    base = getattr(context, "recipe_dir", None)
    if not path.is_absolute() and base is not None:
        path = Path(base) / path
    if not path.is_file():
        raise UserError(f"host.model: no model file at {path}",
                        hint="give the path of a .gguf file, or a catalog name: " + ", ".join(sorted(CATALOG)))
    return path, None


def available_memory() -> int | None:
    """Bytes the kernel says a new allocation can get (MemAvailable), or None where it does not say."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


class LlamaCppHost(CachingHost):
    provider = "llamacpp"
    Config = LlamaCppConfig
    config: LlamaCppConfig

    def __init__(self, config: LlamaCppConfig, context: Any = None):
        super().__init__(config, context)
        self._lock = threading.Lock()
        self._slots: list[_Slot] = []
        self._free = threading.Condition(self._lock)
        self._busy: set[int] = set()
        self._template: str | None = None
        self.path: Path | None = None
        self.gpu_layers = 0

    def default_site_local(self) -> bool:
        return True  # runs in this process

    @property
    def limits_calls_in_decoding(self) -> bool:
        return self.config.constrain_tool_calls

    def describe(self) -> dict[str, Any]:
        out = {"provider": self.provider, "model": self.config.model, "site_local": self.site_local}
        if self.path is not None:
            out.update(path=str(self.path), slots=len(self._slots) or self.slot_count(), gpu_layers=self.gpu_layers)
        return out

    def where(self) -> str:
        return f"host llamacpp {self.config.model}"

    # Checks and loading -------------------------------------------------------------------------------------
    def slot_count(self) -> int:
        if self.config.parallel != "auto":
            return int(self.config.parallel)
        # More slots than threads would oversubscribe the cores: every slot needs a thread of its own.
        threads = self.config.threads or os.cpu_count() or 1
        return max(1, min(4, threads, int(getattr(self.context, "workers", None) or 1)))

    def preflight(self) -> None:
        """Every check that can fail before an episode starts (exit 2 with one message): the runtime is
        installed, the file exists and is GGUF, its template renders, and the slots fit in memory."""
        self.check()
        return None

    def check(self) -> None:
        cfg = self.config
        try:
            import llama_cpp  # noqa: F401 - only to tell the user it is missing
        except ImportError as exc:
            raise UserError(f"host.provider llamacpp needs the llama.cpp runtime, which is not installed ({exc})",
                            hint=RUNTIME_HINT) from None
        path, shipped = resolve_model(cfg.model, self.context)
        try:
            info = read_gguf(path)
        except NotGGUF as exc:
            raise UserError(f"host.model: {exc}", hint="give a GGUF model file (llama.cpp's format; convert "
                            "Hugging Face weights with llama.cpp's convert_hf_to_gguf.py)") from None
        except OSError as exc:
            raise UserError(f"host.model: cannot read {path}: {exc}") from None
        self._template = self._template_source(info, shipped)
        try:
            render_chat(self._template, [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}],
                        [{"name": "finish", "description": "d", "parameters": {"type": "object", "properties": {}}}])
        except TemplateError as exc:
            raise UserError(f"host: the chat template of {cfg.model} does not render: {exc}",
                            hint="set host.chat_template to a Jinja template file that renders tools") from None
        if info.context_length and cfg.context_size > info.context_length:
            raise UserError(f"host.context_size {cfg.context_size} is more than {path.name} was trained for "
                            f"({info.context_length})", hint=f"use at most {info.context_length}")
        need = self.memory_needed(path, info)
        free = available_memory()
        if free is not None and need > free:
            raise UserError(f"host: {cfg.model} needs about {need / 2**30:.1f} GiB ({self.slot_count()} slot(s) of "
                            f"{cfg.context_size} tokens) but {free / 2**30:.1f} GiB of memory is available",
                            hint="lower host.context_size or host.parallel, or use a smaller model")
        self.path = path

    def memory_needed(self, path: Path, info: Any) -> int:
        """Weights (once: the slots share the mapped file) + each slot's f16 KV cache + compute buffers."""
        per_token = info.kv_bytes_per_token() or 0
        return path.stat().st_size + self.slot_count() * (self.config.context_size * per_token + 300 * 2**20)

    def _template_source(self, info: Any, shipped: str | None) -> str:
        cfg = self.config
        if cfg.chat_template:
            source = Path(cfg.chat_template).expanduser()
            base = getattr(self.context, "recipe_dir", None)
            if not source.is_absolute() and base is not None:
                source = Path(base) / source
            if not source.is_file() and (TEMPLATES / cfg.chat_template).is_file():
                source = TEMPLATES / cfg.chat_template
            try:
                return source.read_text(encoding="utf-8")
            except OSError as exc:
                raise UserError(f"host.chat_template: cannot read {source}: {exc}",
                                hint="a Jinja file, relative to the recipe, or a shipped one: "
                                     + ", ".join(p.name for p in sorted(TEMPLATES.glob("*.jinja")))) from None
        if shipped:
            return (TEMPLATES / shipped).read_text(encoding="utf-8")
        if not info.chat_template:
            raise UserError(f"host.model {cfg.model} carries no chat template",
                            hint="set host.chat_template to a Jinja template file that renders tools")
        return info.chat_template

    def load(self) -> None:
        """Open the slots once (thread-safe)."""
        if self.path is None:
            self.check()  # idempotent; outside the lock, which the slot pool's condition shares
        with self._lock:
            if self._slots:
                return
            from llama_cpp import Llama, llama_supports_gpu_offload

            cfg = self.config
            slots = self.slot_count()
            threads = cfg.threads or os.cpu_count() or 1
            per_slot = max(1, threads // slots)
            if cfg.gpu_layers == "auto":
                self.gpu_layers = -1 if llama_supports_gpu_offload() else 0
            else:
                self.gpu_layers = int(cfg.gpu_layers)
            for i in range(slots):
                try:
                    llm = Llama(model_path=str(self.path), n_ctx=cfg.context_size, n_threads=per_slot,
                                n_threads_batch=per_slot, n_gpu_layers=self.gpu_layers, verbose=False,
                                seed=cfg.seed if cfg.seed is not None else 0)
                except (ValueError, RuntimeError) as exc:
                    for slot in self._slots:
                        slot.llm.close()
                    self._slots = []
                    raise HostRequestRejected(
                        f"llama.cpp could not load {self.path}: {exc}", where=self.where(),
                        hint="the file may be damaged (fetch it again) or hold an architecture this llama.cpp "
                             "build does not know") from None
                self._slots.append(_Slot(i, llm))

    async def aclose(self) -> None:
        with self._lock:
            for slot in self._slots:
                slot.llm.close()
            self._slots = []

    # Generation ---------------------------------------------------------------------------------------------
    def _acquire(self, owner: tuple) -> _Slot:
        """The slot this episode used last if it is free, else a free slot (least recently an owner's)."""
        with self._free:
            while True:
                free = [s for s in self._slots if s.index not in self._busy]
                if free:
                    mine = [s for s in free if s.owner == owner]
                    slot = mine[0] if mine else free[0]
                    self._busy.add(slot.index)
                    return slot
                self._free.wait()

    def _release(self, slot: _Slot) -> None:
        with self._free:
            self._busy.discard(slot.index)
            self._free.notify()

    async def _generate(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]],
                        ctx: GenerateContext) -> HostResponse:
        return await asyncio.to_thread(self.generate_sync, messages, tools, ctx)

    def render(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> str:
        try:
            return render_chat(self._template or "", messages, tools)
        except TemplateError as exc:
            raise HostError(f"the chat template failed: {exc}", where=self.where(),
                            hint="check host.chat_template") from exc

    def grammar_text(self, tools: list[dict[str, Any]]) -> str:
        from .grammar import tool_call_grammar

        return tool_call_grammar(tools, preamble_chars=self.config.preamble_chars,
                                 max_calls=self.config.max_calls_per_turn)

    def _grammar(self, slot: _Slot, tools: list[dict[str, Any]]) -> Any:
        """A fresh grammar sampler for one turn (its state advances token by token); the text is built once per
        tool list."""
        key = json.dumps(tools, sort_keys=True)
        if key not in slot.grammars:
            slot.grammars[key] = self.grammar_text(tools)
        try:
            return Grammar(slot.llm, slot.grammars[key])
        except ValueError:
            raise HostError("the tool-call grammar built from the tools' schemas does not parse", where=self.where(),
                            hint="a tool schema uses a JSON-schema feature llama.cpp cannot constrain; set "
                                 "host.constrain_tool_calls: false") from None

    def generate_sync(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]],
                      ctx: GenerateContext) -> HostResponse:
        self.load()
        started = time.perf_counter()
        cfg = self.config
        prompt = self.render(messages, tools)
        owner = (getattr(ctx.task, "qid", None), ctx.run_index)
        slot = self._acquire(owner)
        try:
            llm = slot.llm
            tokens = llm.tokenize(prompt.encode("utf-8"), add_bos=False, special=True)
            budget = cfg.max_tokens or 512
            if len(tokens) + budget > cfg.context_size:
                raise HostError(f"the conversation ({len(tokens)} tokens) and a reply ({budget}) do not fit the "
                                f"context ({cfg.context_size} tokens)", where=self.where(),
                                hint="raise host.context_size, or lower agent.max_turns / "
                                     "agent.max_observation_chars")
            if not cfg.prompt_cache or slot.owner != owner:
                llm.reset()
            slot.owner = owner
            callable_now = [t for t in tools if ctx.allowed is None or t["name"] in ctx.allowed]
            grammar = self._grammar(slot, callable_now) if cfg.constrain_tool_calls and callable_now else None
            try:
                decoded = decode_turn(
                    llm, tokens, max_tokens=budget, is_end=lambda t: _is_end(llm, t), grammar=grammar,
                    reuse=cfg.prompt_cache, temperature=cfg.temperature or 0.0, top_k=cfg.top_k,
                    top_p=cfg.top_p or 1.0, repeat_penalty=cfg.repeat_penalty,
                    seed=None if cfg.seed is None else cfg.seed + ctx.run_index, candidates=slot.candidates(llm))
            finally:
                if grammar is not None:
                    grammar.close()
            out, reused, finish = decoded.tokens, decoded.reused, decoded.finish
            text = llm.detokenize(out, special=True).decode("utf-8", errors="replace")
        except HostError:
            raise
        except Exception as exc:  # noqa: BLE001 - a runtime failure ends this episode, not the run
            raise HostError(f"llama.cpp failed: {type(exc).__name__}: {exc}", where=self.where()) from exc
        finally:
            self._release(slot)
        text = text.replace("<|im_end|>", "")
        found = parse_text_tool_calls(text, tools=tools or None)
        provider_data: dict[str, Any] = {"slot": slot.index, "prompt_tokens_evaluated": len(tokens) - reused,
                                         "constrained": grammar is not None}
        if found.calls:
            provider_data["text_tool_calls"] = True
            finish = "tool_calls"
        usage = Usage(input_tokens=len(tokens), output_tokens=len(out), cached_tokens=reused)
        return HostResponse(content=found.content if found.calls else (text.strip() or None),
                            tool_calls=found.calls, usage=usage, latency_s=time.perf_counter() - started,
                            response_id=f"llamacpp-{uuid.uuid4().hex[:12]}", finish_reason=finish,
                            provider_data=provider_data)


def _is_end(llm: Any, token: int) -> bool:
    import llama_cpp

    return bool(llama_cpp.llama_vocab_is_eog(llm._model.vocab, token))  # <|im_end|>, <|endoftext|>, ...
