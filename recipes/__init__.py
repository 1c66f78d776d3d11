"""Speaker-profiling recipes on SpeechBrain: gender, age super-group and age sub-group."""
