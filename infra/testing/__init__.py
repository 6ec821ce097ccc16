"""Test doubles that speak real protocols on 127.0.0.1: the Ollama API test server and friends."""
