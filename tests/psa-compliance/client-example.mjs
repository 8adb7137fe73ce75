// The Node.js example of docs/psa.md, run as written against a live pinwarden PSA, with the
// generated client the spec's authors publish (@ipfs-shipyard/pinning-service-client, the
// version the compliance suite locks). tests/it/psa.rs runs it; keep the two in step.
//
//   node client-example.mjs ENDPOINT TOKEN CID JOB_ID [ORIGIN ...]
//
// Prints one JSON object: {requestid, submitted, pinned: <the pinned status>, open: <count of
// this job's queued or pinning requests after the pin>}. Exits 1 when the pin is not pinned
// within 60 s or a call fails.
import { Configuration, RemotePinningServiceClient, Status } from '@ipfs-shipyard/pinning-service-client'


const [endpointUrl, token, cid, jobId, ...myNodeAddrs] = process.argv.slice(2)
if (!endpointUrl || !token || !cid || !jobId) {
  console.error('usage: node client-example.mjs ENDPOINT TOKEN CID JOB_ID [ORIGIN ...]')
  process.exit(2)
}

// The generated client throws the fetch Response on a non-2xx: say which call failed and what
// the server answered, not the Response object.
async function main () {
  // --- as in docs/psa.md ---
  const client = new RemotePinningServiceClient(new Configuration({
    endpointUrl,
    accessToken: token,
  }))

  const { requestid, status: submitted } = await client.pinsPost({
    pin: { cid, name: `video-${jobId}`, origins: myNodeAddrs, meta: { job_id: jobId } },
  })
  // --- end ---

  let status
  const deadline = Date.now() + 60_000
  for (;;) {
    // --- as in docs/psa.md ---
    status = await client.pinsRequestidGet({ requestid })
    if (status.status === Status.Pinned) break
    // --- end ---
    if (status.status === Status.Failed || Date.now() > deadline) {
      console.error(`request ${requestid} is ${status.status}: ${JSON.stringify(status.info)}`)
      process.exit(1)
    }
    await new Promise((resolve) => setTimeout(resolve, 100))
  }

  // --- as in docs/psa.md ---
  const open = await client.pinsGet({ status: new Set([Status.Queued, Status.Pinning]), meta: { job_id: jobId } })
  // --- end ---

  console.log(JSON.stringify({ requestid, submitted, pinned: status, open: open.count }))
}

main().catch(async (e) => {
  console.error(typeof e?.text === 'function' ? `${e.status} from ${e.url}: ${await e.text()}` : e)
  process.exit(1)
})
