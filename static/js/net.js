// The one way the page fetches: JSON, and byte ranges of packs.

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

// Bytes first..last (both included) of an object, as an ArrayBuffer.
export function getRange(url, first, last) {
  const want = { headers: { Range: `bytes=${first}-${last}` } };
  return fetch(url, want).then((res) => {
    if (res.status !== 206 && res.status !== 200) throw new Error(`HTTP ${res.status}`);
    return res.arrayBuffer().then((buf) => (res.status === 200 ? buf.slice(first, last + 1) : buf)); // Range ignored
  });
}

// A gzip member's JSON.
export function inflateJSON(buf) {
  const stream = new Blob([buf]).stream().pipeThrough(new DecompressionStream("gzip"));
  return new Response(stream).json();
}
