"""Causal language models: loading (any HuggingFace name or folder, the offline SmolLM2 default), batched
continuation scoring with prefix caching, greedy/sampled generation, prompt strategies and their metrics,
soft prompts (prompt tuning) with loss masks and prefix caching (a key/value cache, or the prompt's keys and
values shared by every row inside one packed model call).

transformers is imported only when a model is loaded, so ``import adaptlab.lm`` stays light::

    >>> import adaptlab as al
    >>> al.lm.SMOLLM2
    'smollm2-135m-instruct'
"""

from adaptlab._lazy import attach

__all__, __getattr__, __dir__ = attach(__name__, {
    "decode": ["generate", "generate_ids", "generate_scored", "next_token", "top_p_filter"],
    "load": ["GEMMA3", "SMOLLM2", "CausalLM", "cache_dir", "char_tokenizer", "gemma3_folder", "gemma3_gguf",
             "load_causal_lm", "smollm2_folder", "tiny_random_lm", "wrap"],
    "prompts": ["INSTRUCTION", "STRATEGIES", "build_prompts", "chat_wrap", "evaluate_mc", "failure_taxonomy",
                "mc_metrics", "parse_letter", "question_block"],
    "scoring": ["base_forward", "continuation_logprobs", "encode_prefix", "grouped_logprobs", "score_options"],
    "shared_prefix": ["shared_prefix_hidden"],
    "softprompt": ["CACHE_MODES", "INITS", "SoftPrompt", "freeze", "init_prompt", "input_embedding", "loss_positions",
                   "make_batch", "next_token_logits", "prompt_generate", "prompt_hidden", "prompt_loss"],
})
