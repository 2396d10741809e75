"""The IoT client fleetbench started from: connect, subscribe to example/topic, publish
"Hello, MQTT!", receive it in on_message, disconnect. Exits 0 only if the message came back."""

import sys
import threading

import paho.mqtt.client as mqtt

host, port = sys.argv[1], int(sys.argv[2])
received = threading.Event()
subscribed = threading.Event()


def on_connect(client, userdata, flags, reason_code, properties):
    if reason_code.is_failure:
        print(f"connect refused: {reason_code}", flush=True)
        sys.exit(3)
    client.subscribe("example/topic", qos=1)


def on_subscribe(client, userdata, mid, reason_codes, properties):
    subscribed.set()
    client.publish("example/topic", "Hello, MQTT!", qos=1)


def on_message(client, userdata, msg):
    print(f"received {msg.topic}: {msg.payload.decode()}", flush=True)
    received.set()


client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="paho-example")
client.on_connect = on_connect
client.on_subscribe = on_subscribe
client.on_message = on_message
client.connect(host, port, keepalive=30)
client.loop_start()
ok = received.wait(timeout=10)
client.disconnect()
client.loop_stop()
if not subscribed.is_set():
    print("never subscribed", flush=True)
sys.exit(0 if ok else 1)
