// The playground's request as code to copy: curl and the official openai Python SDK. The key is never
// written into them: both read it from the environment.

export function curlSnippet(origin, body) {
  const json = JSON.stringify(body, null, 2).replaceAll("'", "'\\''");
  return [
    `curl ${origin}/v1/chat/completions \\`,
    `  -H "Authorization: Bearer $OPENAI_API_KEY" \\`,
    `  -H "Content-Type: application/json" \\`,
    `  -d '${json}'`,
  ].join("\n");
}

export function pythonSnippet(origin, body) {
  const lines = [
    "from openai import OpenAI",
    "",
    `client = OpenAI(base_url=${pyString(`${origin}/v1`)})  # the key from OPENAI_API_KEY`,
    "stream = client.chat.completions.create(",
    `    model=${pyString(body.model)},`,
    `    messages=[{"role": "user", "content": ${pyString(body.messages[0].content)}}],`,
    `    temperature=${body.temperature},`,
    `    max_tokens=${body.max_tokens},`,
    "    stream=True,",
  ];
  if (body.metadata) lines.push(`    extra_body={"metadata": ${pyDict(body.metadata)}},`);
  lines.push(
    ")",
    "for chunk in stream:",
    "    if chunk.choices and chunk.choices[0].delta.content:",
    "        print(chunk.choices[0].delta.content, end=\"\", flush=True)",
    "print()");
  return lines.join("\n");
}

// JSON string literals are valid Python string literals (the escapes agree), non-ASCII included.
function pyString(text) {
  return JSON.stringify(String(text));
}

function pyDict(object) {
  return `{${Object.entries(object).map(([key, value]) => `${pyString(key)}: ${pyString(value)}`).join(", ")}}`;
}
