// Quick start: stream a message through the Attest gateway with the official SDK.
// The SDK reads ANTHROPIC_BASE_URL (the gateway) and ANTHROPIC_API_KEY (your OIDC token) from the
// environment, exactly as it would for the real API.
import Anthropic from '@anthropic-ai/sdk';

// A well-known test card number, built at run time so no card number sits in this file.
const body = '411111111111111';
let sum = 0;
for (let i = 0; i < body.length; i++) {
  let d = Number(body[body.length - 1 - i]);
  if (i % 2 === 0) d = d * 2 > 9 ? d * 2 - 9 : d * 2;
  sum += d;
}
const card = `${body}${(10 - (sum % 10)) % 10}`.replace(/(\d{4})(?=\d)/g, '$1 ');

const client = new Anthropic();
const stream = client.messages.stream({
  model: process.env.ATTEST_MODEL ?? 'claude-sonnet-5-5',
  max_tokens: 200,
  messages: [{ role: 'user', content: `Please repeat this back exactly: my card is ${card}.` }],
});
stream.on('text', (text) => process.stdout.write(text));
const final = await stream.finalMessage();
process.stdout.write(`\n[stop_reason=${final.stop_reason}, output_tokens=${final.usage.output_tokens}]\n`);
