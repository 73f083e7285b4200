"""Knowledge files: chunked, embedded once, kept by digest (a changed file re-indexed),
recalled into a task's prompt with its source and chunk; PDFs through pypdf. No Ray:
``Task.execute()`` runs in this process, the model is the stub over HTTP."""

from __future__ import annotations

import pytest

from ray_orch import Agent, InvalidTaskFieldError, Memory, Task
from ray_orch.policy.knowledge import chunk_text, index_knowledge, knowledge_files
from ray_orch.testing import StubLLMServer


def _pdf(text: str) -> bytes:
    """A one-page PDF showing ``text`` (Helvetica), with a correct xref table."""
    stream = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode()
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>",
               b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
               b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
               b"/Resources << /Font << /F1 5 0 R >> >> >>",
               b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
               b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"]
    out, offsets = bytearray(b"%PDF-1.4\n"), []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1, xref)
    return bytes(out)


@pytest.fixture
def docs(tmp_path):
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "refunds.md").write_text(
        "# Refunds\nCustomers may return any item within 30 days for a full refund.\n\n"
        "# Exchanges\nSizes can be exchanged in any store, free of charge.\n")
    (folder / "shipping.md").write_text("# Shipping\nOrders ship within two working days.\n")
    (folder / "notes.bin").write_bytes(b"\x00\x01")  # not a knowledge file: skipped
    (tmp_path / "policy.pdf").write_bytes(_pdf("Pets are welcome in the lobby on a leash."))
    return folder


def test_files_are_chunked_with_their_headings():
    chunks = chunk_text("# A\none\n\n# B\ntwo\n\nmore of two")
    assert chunks == ["# A\none", "# B\ntwo\n\nmore of two"]
    long = chunk_text("word. " * 600, size=500)
    assert all(len(c) <= 500 for c in long) and len(long) >= 6


def test_knowledge_is_recalled_with_its_source_indexed_once_and_again_on_change(
        docs, tmp_path):
    memory = Memory(tmp_path / "store")
    with StubLLMServer(reply="Within 30 days.") as stub:
        agent = Agent(role="Support", goal="Answer", llm=stub.llm, memory=memory,
                      knowledge=[str(docs), str(tmp_path / "policy.pdf")])
        assert [p.name for p in map(__import__("pathlib").Path, agent.knowledge_paths)] == [
            "refunds.md", "shipping.md", "policy.pdf"]
        out = Task(description="How long do customers have to send something back for "
                               "their money?", agent=agent).execute()
        prompt = stub.requests[-1].prompt
        assert "Relevant knowledge" in prompt and "full refund" in prompt
        cited = out.metadata["memory"]["recalled"][0]
        assert cited["kind"] == "knowledge" and cited["source"].endswith("refunds.md")
        assert cited["chunk"] == 0
        Task(description="Can I bring my dog into the lobby?", agent=agent).execute()
        assert "Pets are welcome in the lobby" in stub.requests[-1].prompt
    files = knowledge_files([docs], who="test")
    assert set(index_knowledge(memory, files).values()) == {"unchanged"}
    (docs / "refunds.md").write_text("# Refunds\nReturns are accepted within 14 days only.\n")
    assert index_knowledge(memory, files) == {str(docs / "refunds.md"): "indexed",
                                              str(docs / "shipping.md"): "unchanged"}
    texts = [i.text for i in memory.find("how many days for a return?", kind="knowledge")]
    assert any("14 days" in t for t in texts) and not any("30 days" in t for t in texts)


def test_bad_knowledge_paths_are_typed_errors_naming_the_agent(tmp_path):
    with pytest.raises(InvalidTaskFieldError, match=r"agent 'Support'.*does not exist"):
        Agent(role="Support", knowledge=[str(tmp_path / "missing.md")])
    (tmp_path / "data.bin").write_bytes(b"x")
    with pytest.raises(InvalidTaskFieldError, match="not one of"):
        Agent(role="Support", knowledge=str(tmp_path / "data.bin"))
