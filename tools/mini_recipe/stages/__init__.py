"""The stages' code, by family: encoders, autoencoders, UNets, the LLM."""
