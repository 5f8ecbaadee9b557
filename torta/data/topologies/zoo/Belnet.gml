graph [
  DateObtained "20/10/10"
  GeoLocation "Belgium"
  GeoExtent "Country"
  Network "BELNET"
  Note "Some PoPS ambigious. Cite available at http://www.belnet.be/sites/default/files/file/Publications/BELNET_annual_report_2008_EN.pdf"
  Source "http://www.belnet.be/en/about-us/infrastructure"
  Version "1.0"
  Type "REN"
  Backbone 1
  Commercial 0
  label "BELNET"
  Customer 0
  LastAccess "20/10/10"
  Access 0
  Layer "IP"
  Classification "Backbone Customer?"
  Creator "Topology Zoo Toolset"
  Developed "developed"
  Transit 0
  NetworkDate "C"
  Testbed 0
  SvnVersion 8123
  node [
    id 0
    label "Brugge"
    type "Small Node"
  ]
  node [
    id 1
    label "Gent1"
    type "One of two small nodes in same city"
  ]
  node [
    id 2
    label "Gent2"
    type "One of two small nodes in same city"
  ]
  node [
    id 3
    label "Antwerpen1"
    type "One of two small nodes in same city"
  ]
  node [
    id 4
    label "Antwerpen 2"
    type "One of two small nodes in same city"
  ]
  node [
    id 5
    label "Korthijk"
    type "Small Node"
  ]
  node [
    id 6
    label "Mons"
    type "Small Node"
  ]
  node [
    id 7
    label "Charleroi"
    type "Small Node"
  ]
  node [
    id 8
    label "Louvain-la-Neuve"
    type "Small Node"
  ]
  node [
    id 9
    label "Namur"
    type "Small Node"
  ]
  node [
    id 10
    label "Arlon"
    type "Small Node"
  ]
  node [
    id 11
    label "Liege2 "
    type "One of two small nodes in same city"
  ]
  node [
    id 12
    label "Liege 1 "
    type "One of two small nodes in same city"
  ]
  node [
    id 13
    label "Brusell Camp."
    type "Small Node"
  ]
  node [
    id 14
    label "Bruzav"
    type "Small Node"
  ]
  node [
    id 15
    label "Brudie"
    type "Small Node"
  ]
  node [
    id 16
    label "Evere"
    type "Large Node"
  ]
  node [
    id 17
    label "Vilvoorde"
    type "Large Node"
  ]
  node [
    id 18
    label "Leuven1"
    type "One of two small nodes in same city"
  ]
  node [
    id 19
    label "Leuven2"
    type "One of two small nodes in same city"
  ]
  node [
    id 20
    label "Hasselt"
    type "Small Node"
  ]
  node [
    id 21
    label "Geel"
    type "Small Node"
  ]
  edge [
    source 0
    target 1
    LinkLabel "Blue"
  ]
  edge [
    source 0
    target 5
    LinkLabel "Blue"
  ]
  edge [
    source 1
    target 2
  ]
  edge [
    source 1
    target 2
    LinkLabel "Blue"
  ]
  edge [
    source 2
    target 3
    LinkLabel "Blue"
  ]
  edge [
    source 3
    target 4
    LinkLabel "Blue"
  ]
  edge [
    source 3
    target 4
    LinkLabel "Blue"
  ]
  edge [
    source 4
    target 16
    LinkLabel "Brown"
  ]
  edge [
    source 4
    target 17
  ]
  edge [
    source 4
    target 21
    LinkLabel "Brown"
  ]
  edge [
    source 5
    target 17
    LinkLabel "Blue"
  ]
  edge [
    source 6
    target 17
    LinkLabel "Green"
  ]
  edge [
    source 6
    target 7
    LinkLabel "Green"
  ]
  edge [
    source 7
    target 8
    LinkLabel "Green"
  ]
  edge [
    source 8
    target 9
    LinkLabel "Green"
  ]
  edge [
    source 9
    target 10
    LinkLabel "Green"
  ]
  edge [
    source 10
    target 11
    LinkLabel "Green"
  ]
  edge [
    source 11
    target 12
    LinkLabel "Green"
  ]
  edge [
    source 11
    target 12
    LinkLabel "Green"
  ]
  edge [
    source 12
    target 16
    LinkLabel "Green"
  ]
  edge [
    source 13
    target 17
    LinkLabel "Red"
  ]
  edge [
    source 13
    target 14
    LinkLabel "Red"
  ]
  edge [
    source 14
    target 15
    LinkLabel "Red"
  ]
  edge [
    source 15
    target 16
    LinkLabel "Red"
  ]
  edge [
    source 16
    target 18
    LinkLabel "Brown"
  ]
  edge [
    source 16
    target 17
    LinkLabel "Red"
  ]
  edge [
    source 16
    target 17
    LinkLabel "Green"
  ]
  edge [
    source 16
    target 17
  ]
  edge [
    source 16
    target 17
    LinkLabel "Blue"
  ]
  edge [
    source 18
    target 19
    LinkLabel "Brown"
  ]
  edge [
    source 18
    target 19
  ]
  edge [
    source 19
    target 20
    LinkLabel "Brown"
  ]
  edge [
    source 20
    target 21
    LinkLabel "Brown"
  ]
]
