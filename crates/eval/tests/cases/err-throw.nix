throw "my message"
