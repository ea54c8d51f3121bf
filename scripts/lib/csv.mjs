// CSV reading shared by the data scripts.

// RFC 4180: fields separated by commas, optionally in double quotes with "" for a quote.
export function parseCsv(text, file) {
  const rows = [];
  let row = [], field = '', quoted = false;
  for (let i = 0; i < text.length; ++i) {
    const c = text[i];
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') field += '"', ++i;
      else if (c === '"') quoted = false;
      else field += c;
    } else if (c === '"') quoted = true;
    else if (c === ',') row.push(field), field = '';
    else if (c === '\n' || c === '\r') {
      if (c === '\r' && text[i + 1] === '\n') ++i;
      row.push(field), rows.push(row), row = [], field = '';
    } else field += c;
  }
  if (quoted) throw new Error(`${file}: a quoted field is not closed`);
  if (field !== '' || row.length > 0) row.push(field), rows.push(row);
  return rows;
}
