"""Datasets: MNIST, MNIST-1D, MultiMNIST, Animal-MNIST, templated MNIST captions, Omniglot, CIFAR-10(-C), text
tasks (capitals, MMLU, WordNet, English/Spanish corpora and FreeDict pairs) and word-level tasks (inflections,
capitals, translations, number words, WordNet relations), read from local copies (installed packages, Debian
packages, ``$ADAPTLAB_DATA``, a user's folder) and checked (pinned SHA-256 or structure) before use, with clear
errors when missing; image corruptions (ImageNet-C style) and label / sub-population shifts."""

from adaptlab._lazy import attach

__all__, __getattr__, __dir__ = attach(__name__, {
    "animals": ["ANIMAL_CLASSES", "AnimalMNIST", "animal_mnist_dir", "load_animal_mnist"],
    "_archive": ["download", "safe_extract_zip", "sha256_file", "verify_sha256"],
    "captions": ["CaptionSet", "Vocab", "box_relation", "canonical_order", "chain_caption", "make_captions",
                 "parse_caption", "paste_digit"],
    "cifar": ["CIFAR10", "cifar10_dir", "cifar10c_dir", "load_cifar10", "load_cifar10c"],
    "corpora": ["load_corpus", "read_sentences", "tokenize"],
    "corruptions": ["CORRUPTIONS", "PARAMS", "corrupt", "disk_kernel", "motion_kernels"],
    "freedict": ["load_en_es_pairs", "read_dictd"],
    "mnist": ["MNIST", "load_mnist"],
    "mnist1d": ["MNIST1D", "load_mnist1d"],
    "multimnist": ["MultiMNIST", "compose", "make_multimnist"],
    "text": ["LETTERS", "NOUN_SUPERSENSES", "WORDNET_POS", "Lexname", "MCQuestion", "WordNetGloss", "WordNetNoun",
             "load_capitals", "load_lexnames", "load_mmlu", "load_wordnet_glosses", "load_wordnet_nouns",
             "mmlu_subjects", "plural_pairs", "wordnet_dir"],
    "omniglot": ["CharacterSet", "OneShotRun", "load_characters", "load_omniglot", "load_runs", "omniglot_dir"],
    "shift": ["pad32", "permute_labels", "subpopulation"],
    "silver": ["DOMAINS", "candidate_sentences", "chunk_spans", "load_silver", "pipeline_accuracy",
               "sample_sentences", "silver_label"],
    "wordtasks": ["WORD_TASKS", "dict_dir", "first_translations", "fit_tokenizer", "word_task", "word_tasks"],
    "wordvec": ["skipgram_vectors"],
})
