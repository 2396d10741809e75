// aedes for the broker comparison (`cargo xtask brokers`), started by the harness as
//   node aedes-server.mjs PORT AEDES_JS
// where AEDES_JS is the aedes.js of the copy `npm install aedes` put under target/tools/aedes.
// It listens on 127.0.0.1:PORT only, keeps everything in memory (aedes's default persistence,
// as rumqttd and the mosquitto of the comparison do), and ends on SIGTERM.
//
// Every limit that changes results, against aedes 1.2's defaults:
// - concurrency (deliveries in progress at once, default 100): 10,000, so that deliveries are
//   not queued by a limit that mosquitto (no in-flight limit here) does not have;
// - queueLimit (messages queued for a client before its session is up, default 42): 100,000;
// - maxClientsIdLength (default 23, the MQTT 3.1.1 minimum a server must accept): 65,535, as
//   mosquitto and rumqttd accept long client ids.
import net from 'node:net'
import { pathToFileURL } from 'node:url'

const [port, aedesJs] = process.argv.slice(2)
const { Aedes } = await import(pathToFileURL(aedesJs).href)
const aedes = await Aedes.createBroker({
  concurrency: 10000,
  queueLimit: 100000,
  maxClientsIdLength: 65535
})
const server = net.createServer(aedes.handle)
server.listen(Number(port), '127.0.0.1')
process.on('SIGTERM', () => {
  server.close()
  aedes.close(() => process.exit(0))
})
