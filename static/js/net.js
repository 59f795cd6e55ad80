// The one way the page fetches JSON, and gzip members of a pack by byte range.

// A JSON object: {json, res} (the response for its headers), or a rejection.
export function fetchJSON(url, opts) {
  return fetch(url, opts).then((res) => {
    if (!res.ok) throw new Error(`HTTP ${res.status}`);
    return res.json().then((json) => ({ json, res }));
  });
}

// The same, one request per URL at a time (a poll does not ask again for
// what is on its way); the JSON only.
const asked = {};
export function getJSON(url, opts) {
  if (asked[url]) return Promise.reject(new Error("already asked"));
  asked[url] = true;
  return fetchJSON(url, opts)
    .then((got) => got.json)
    .finally(() => {
      delete asked[url];
    });
}

// A gzip member of a pack (large races), read by range and unzipped here.
export function getPiece(pack, at, length) {
  const want = { headers: { Range: `bytes=${at}-${at + length - 1}` } };
  return fetch(pack, want).then((res) => {
    if (res.status !== 206 && res.status !== 200) throw new Error(`HTTP ${res.status}`);
    return res.arrayBuffer().then((buf) => {
      if (res.status === 200) buf = buf.slice(at, at + length); // a server that ignores Range
      const text = new Response(
        new Blob([buf]).stream().pipeThrough(new DecompressionStream("gzip")),
      );
      return text.json();
    });
  });
}
