//! Corpus and property tests for the lenient front door (filled in by the next commit).
