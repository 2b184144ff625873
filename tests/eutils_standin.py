"""A local stand-in for NCBI's E-utilities (test support, not shipped): esearch, efetch and
elink over aiohttp on 127.0.0.1 (a port from the OS), serving real PubMed records.

The records are the PubmedArticle elements of the real files in
tests/fixtures/formats/pubmed_xml, each served as NCBI serves it (efetch answers are a
PubmedArticleSet of the asked ids, in their order). Each record gets an entry date (`edat`);
esearch answers its date window in NCBI's JSON shape (count, retstart, retmax, idlist),
paged by retstart/retmax. elink (`dbfrom=pubmed`, `linkname=pubmed_pubmed`,
`cmd=neighbor_score`, `retmode=json`, one `id` per PMID) answers from `similar` in NCBI's JSON
shape: a linkset per id (`ids`, `linksetdbs: [{dbto, linkname, links: [{id, score}]}]`), the
PMID itself first with the top score, as PubMed does; a PMID without neighbours gets a linkset
without linksetdbs. Faults: `fail_next(endpoint, status, count)` (429 with Retry-After, or 5xx),
`malformed_next_efetch()` (a cut XML answer), `hostile_next_elink(links)` (that many links for
every asked PMID and linksets for PMIDs nobody asked), `raw_next_elink(body)` (those bytes
as the next answer: cut or malformed JSON, wrong types). Every request is recorded."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from aiohttp import web

_ARTICLE = re.compile(rb"<PubmedArticle>.*?</PubmedArticle>", re.S)
_PMID = re.compile(rb"<PMID[^>]*>(\d+)</PMID>")
_HEAD = (b'<?xml version="1.0" encoding="utf-8"?>\n<!DOCTYPE PubmedArticleSet PUBLIC '
         b'"-//NLM//DTD PubMedArticle, 1st January 2019//EN" '
         b'"https://dtd.nlm.nih.gov/ncbi/pubmed/out/pubmed_190101.dtd">\n<PubmedArticleSet>\n')


def articles(paths: Iterable[Path]) -> dict[str, bytes]:
    """PMID -> its PubmedArticle element, from real PubMed XML files, in file order."""
    found: dict[str, bytes] = {}
    for path in paths:
        for element in _ARTICLE.findall(path.read_bytes()):
            pmid = _PMID.search(element)
            if pmid:
                found.setdefault(pmid.group(1).decode(), element)
    return found


@dataclass
class Request:
    endpoint: str
    method: str
    params: dict[str, str]
    at: float = field(default_factory=time.monotonic)  # when it arrived


@dataclass
class EutilsStandIn:
    records: dict[str, bytes]  # pmid -> article
    entry_dates: dict[str, date]  # pmid -> edat
    requests: list[Request] = field(default_factory=list)
    faults: list[tuple[str, int]] = field(default_factory=list)
    malformed_efetch: int = 0
    # pmid -> its similar articles (pmid, score), best first
    similar: dict[str, list[tuple[str, int]]] = field(default_factory=dict)
    hostile_elink: list[int] = field(default_factory=list)
    raw_elink: list[bytes] = field(default_factory=list)
    _runner: web.AppRunner | None = None
    port: int = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/entrez/eutils"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/entrez/eutils/esearch.fcgi", self._esearch)
        app.router.add_route("*", "/entrez/eutils/efetch.fcgi", self._efetch)
        app.router.add_route("*", "/entrez/eutils/elink.fcgi", self._elink)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def fail_next(self, endpoint: str, status: int, count: int = 1) -> None:
        self.faults += [(endpoint, status)] * count

    def malformed_next_efetch(self, count: int = 1) -> None:
        self.malformed_efetch += count

    def hostile_next_elink(self, links: int) -> None:
        self.hostile_elink.append(links)

    def raw_next_elink(self, body: bytes) -> None:
        self.raw_elink.append(body)

    async def _params(self, request: web.Request, endpoint: str) -> dict[str, str]:
        params = dict(request.query)
        if request.method == "POST":
            params.update({k: str(v) for k, v in (await request.post()).items()})
        self.requests.append(Request(endpoint, request.method, params))
        return params

    def _fault(self, endpoint: str) -> web.Response | None:
        for index, (name, status) in enumerate(self.faults):
            if name == endpoint:
                del self.faults[index]
                if status == 429:
                    return web.json_response({"error": "API rate limit exceeded",
                                              "api-key": "", "count": "4", "limit": "3"},
                                             status=429, headers={"Retry-After": "1"})
                return web.Response(status=status, text="<html>Backend error</html>",
                                    content_type="text/html")
        return None

    async def _esearch(self, request: web.Request) -> web.Response:
        params = await self._params(request, "esearch")
        fault = self._fault("esearch")
        if fault is not None:
            return fault
        low = _day(params["mindate"])
        high = _day(params["maxdate"])
        ids = [p for p in self.records if low <= self.entry_dates[p] <= high]
        start, size = int(params.get("retstart", 0)), int(params.get("retmax", 20))
        page = ids[start:start + size]
        body: dict[str, Any] = {"header": {"type": "esearch", "version": "0.3"},
                                "esearchresult": {
                                    "count": str(len(ids)), "retmax": str(len(page)),
                                    "retstart": str(start), "idlist": page,
                                    "translationset": [], "querytranslation": params["term"]}}
        return web.Response(text=json.dumps(body), content_type="application/json")

    async def _efetch(self, request: web.Request) -> web.Response:
        params = await self._params(request, "efetch")
        fault = self._fault("efetch")
        if fault is not None:
            return fault
        ids = [i for i in params["id"].split(",") if i]
        body = _HEAD + b"\n".join(self.records[i] for i in ids if i in self.records) + \
            b"\n</PubmedArticleSet>\n"
        if self.malformed_efetch:
            self.malformed_efetch -= 1
            body = body[:len(body) // 2]  # cut mid-record, as a dropped connection leaves it
        return web.Response(body=body, content_type="text/xml")


    async def _elink(self, request: web.Request) -> web.Response:
        ids = list(request.query.getall("id", []))
        if request.method == "POST":
            form = await request.post()
            ids += [str(v) for v in form.getall("id", [])]
            params = {k: str(v) for k, v in form.items()}
        else:
            params = {}
        params.update({k: v for k, v in request.query.items()})
        params["id"] = ",".join(ids)
        self.requests.append(Request("elink", request.method, params))
        fault = self._fault("elink")
        if fault is not None:
            return fault
        expected = {"dbfrom": "pubmed", "db": "pubmed", "linkname": "pubmed_pubmed",
                    "cmd": "neighbor_score", "retmode": "json"}
        wrong = [k for k, v in expected.items() if params.get(k) != v]
        if wrong or not ids:
            return web.json_response({"ERROR": f"bad parameters: {wrong or ['id']}"},
                                     status=400)
        if self.raw_elink:
            return web.Response(body=self.raw_elink.pop(0), content_type="application/json")
        linksets: list[dict[str, Any]] = []
        hostile = self.hostile_elink.pop(0) if self.hostile_elink else 0
        for pmid in ids:
            linkset: dict[str, Any] = {"dbfrom": "pubmed", "ids": [pmid]}
            if hostile:
                links = [{"id": str(10**8 + n), "score": str(10**6 - n)}
                         for n in range(hostile)]
            else:
                neighbours = self.similar.get(pmid, [])
                links = [{"id": n, "score": str(s)} for n, s in neighbours]
                if neighbours:  # PubMed lists the article itself first, with the top score
                    links.insert(0, {"id": pmid, "score": str(neighbours[0][1] + 1)})
            if links:
                linkset["linksetdbs"] = [{"dbto": "pubmed", "linkname": "pubmed_pubmed",
                                          "links": links}]
            linksets.append(linkset)
        if hostile:
            linksets += [{"dbfrom": "pubmed", "ids": [str(9 * 10**8 + n)], "linksetdbs": [
                {"dbto": "pubmed", "linkname": "pubmed_pubmed",
                 "links": [{"id": ids[0], "score": "1"}]}]} for n in range(100)]
        body = {"header": {"type": "elink", "version": "0.3"}, "linksets": linksets}
        return web.Response(text=json.dumps(body), content_type="application/json")


def _day(text: str) -> date:
    year, month, day = (int(x) for x in text.split("/"))
    return date(year, month, day)
