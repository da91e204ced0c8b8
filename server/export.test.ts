// CSV export opens correctly in spreadsheet programs: the download starts
// with a UTF-8 byte-order mark (without it Excel reads the file in the local legacy code page)
// and says charset=utf-8; text of every kind survives a round trip through the CSV; JSONL is
// unchanged, with no BOM.
import { describe, expect, it } from 'vitest';
import { createManualJob, createUser } from './test-support/factories';
import { useTestServer, type TestServer } from './test-support/server';

let server: TestServer;
useTestServer((started) => (server = started));

const HOSTILE = {
  prompt: 'Café, naïve façade — Ærøskøbing ß 🧪👩‍🔬 emoji with a joiner',
  groundTruth: 'مرحبا بالعالم: right-to-left, then "quoted", a comma,\nand a second line',
  // Starts with "=": a spreadsheet would run it; the export neutralises it with a leading quote.
  prediction: '=HYPERLINK("http://x"), "quote" and\r\nשלום 🎉 after CRLF',
};

/** RFC 4180: fields separated by commas, records by CRLF, quoted fields may hold both and "" for a quote. */
function parseCsv(text: string): string[][] {
  const records: string[][] = [];
  let record: string[] = [];
  let field = '';
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const char = text[i];
    if (quoted) {
      if (char === '"' && text[i + 1] === '"') {
        field += '"';
        i++;
      } else if (char === '"') quoted = false;
      else field += char;
    } else if (char === '"') quoted = true;
    else if (char === ',') {
      record.push(field);
      field = '';
    } else if (char === '\r' && text[i + 1] === '\n') {
      record.push(field);
      records.push(record);
      record = [];
      field = '';
      i++;
    } else field += char;
  }
  if (field !== '' || record.length > 0) records.push([...record, field]);
  return records;
}

async function jobWithHostileRow() {
  const user = await createUser(server.deps);
  const { jobId, token } = await createManualJob(server.deps, user.id);
  const answer = await server.client(token).pod.writePredictions.mutate({
    predictions: [{ epoch: 1, step: 10, sampleIndex: 0, trigger: 'steps', ...HOSTILE }],
  });
  expect(answer.inserted).toBe(1);
  return { jobId, api: server.client(user.token) };
}

async function download(path: string): Promise<{ bytes: Buffer; contentType: string | null }> {
  const response = await fetch(`${server.url}${path}`);
  expect(response.status).toBe(200);
  return { bytes: Buffer.from(await response.arrayBuffer()), contentType: response.headers.get('content-type') };
}

describe('the CSV export', () => {
  it('starts with a UTF-8 byte-order mark, says charset=utf-8, and round-trips accents, emoji, RTL, quotes, commas, newlines', async () => {
    const { jobId, api } = await jobWithHostileRow();
    const link = await api.predictions.exportLink.mutate({ jobId, format: 'csv' });
    const { bytes, contentType } = await download(link.url);
    expect(contentType).toBe('text/csv; charset=utf-8');
    expect([...bytes.subarray(0, 3)]).toEqual([0xef, 0xbb, 0xbf]);

    // TextDecoder drops the BOM as a spreadsheet does; the rest must be valid UTF-8 throughout.
    const text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
    const [header, row, ...rest] = parseCsv(text);
    expect(rest).toEqual([]);
    expect(header).toEqual(['id', 'epoch', 'step', 'sampleIndex', 'trigger', 'prompt', 'groundTruth', 'prediction', 'altered', 'createdAt']);
    const cells = Object.fromEntries(header!.map((name, i) => [name, row![i]]));
    expect(cells).toMatchObject({ epoch: '1', step: '10', sampleIndex: '0', trigger: 'steps', prompt: HOSTILE.prompt, groundTruth: HOSTILE.groundTruth });
    // The one deliberate change: a leading quote keeps the formula from running; the rest is intact.
    expect(cells.prediction).toBe(`'${HOSTILE.prediction}`);
  });
});

describe('the JSONL export', () => {
  it('has no byte-order mark and keeps every character as stored', async () => {
    const { jobId, api } = await jobWithHostileRow();
    const link = await api.predictions.exportLink.mutate({ jobId, format: 'jsonl' });
    const { bytes, contentType } = await download(link.url);
    expect(contentType).toBe('application/x-ndjson; charset=utf-8');
    expect(bytes[0]).toBe('{'.charCodeAt(0));
    const lines = bytes.toString('utf8').trimEnd().split('\n');
    expect(lines).toHaveLength(1);
    expect(JSON.parse(lines[0]!)).toMatchObject({ step: 10, sampleIndex: 0, ...HOSTILE });
  });
});
